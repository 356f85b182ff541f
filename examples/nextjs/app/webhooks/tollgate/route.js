// The receiver for the Stripe events tollgate forwards (webhook.forward_url).
// tollgate verified each event from Stripe, applied it to its own state and
// re-signed it with webhook.forward_secret; this handler checks that
// signature with Stripe's own library and does the app's side effect.
//
// The stripe package is imported for its webhook signature check only: the
// app holds no Stripe API key and makes no Stripe calls (tollgate does).
import fs from 'node:fs/promises';
import path from 'node:path';
import Stripe from 'stripe';

const outbox = () => path.join(process.env.DATA_DIR ?? 'data', 'outbox');

export async function POST(request) {
  const body = await request.text(); // the signature covers the exact body
  let event;
  try {
    event = Stripe.webhooks.constructEvent(body, request.headers.get('stripe-signature') ?? '', process.env.TOLLGATE_FORWARD_SECRET);
  } catch {
    return Response.json({ error: 'invalid_signature' }, { status: 400 });
  }
  try {
    const result = event.type === 'checkout.session.completed' ? await welcomeOnce(event) : 'ignored';
    return Response.json({ received: true, result });
  } catch (err) {
    console.error(JSON.stringify({ msg: 'webhook: effect failed; tollgate will retry', event: event.id, err: String(err) }));
    return Response.json({ error: 'failed' }, { status: 500 }); // tollgate retries with backoff
  }
}

// welcomeOnce queues the welcome email once per event id: tollgate forwards
// at least once, so an event can arrive again. The message is written under
// a temporary name, then linked under the event id; link() refuses an
// existing name, so one of any number of deliveries wins. (With a real mail
// provider, send from this outbox, or give it the event id as idempotency key.)
async function welcomeOnce(event) {
  const dir = outbox();
  await fs.mkdir(dir, { recursive: true });
  const final = path.join(dir, `${event.id}.json`);
  const tmp = `${final}.${process.pid}.${Date.now()}.tmp`;
  await fs.writeFile(tmp, JSON.stringify({ template: 'welcome', customer: event.data.object.customer, event: event.id }));
  try {
    await fs.link(tmp, final);
    return 'sent';
  } catch (err) {
    if (err.code === 'EEXIST') return 'duplicate';
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
