// The receiver for the Stripe events tollgate forwards (webhook.forward_url).
// tollgate verified each event from Stripe, applied it to its own state and
// re-signed it with webhook.forward_secret; this handler checks that
// signature with Stripe's own library and does the app's side effect.
//
// The stripe package is imported for its webhook signature check only: the
// app holds no Stripe API key and makes no Stripe calls (tollgate does).
import fs from 'node:fs/promises';
import path from 'node:path';
import express from 'express';
import Stripe from 'stripe';

const secret = process.env.TOLLGATE_FORWARD_SECRET;
const outbox = path.join(process.env.DATA_DIR ?? 'data', 'outbox');

export const router = express.Router();

// The raw body: the signature covers the exact bytes.
router.post('/', express.raw({ type: 'application/json', limit: '1mb' }), async (req, res) => {
  let event;
  try {
    event = Stripe.webhooks.constructEvent(req.body, req.get('stripe-signature') ?? '', secret);
  } catch {
    return res.status(400).json({ error: 'invalid_signature' });
  }
  try {
    const result = event.type === 'checkout.session.completed' ? await sendWelcomeOnce(event) : 'ignored';
    res.json({ received: true, result });
  } catch (err) {
    console.error(JSON.stringify({ msg: 'webhook: effect failed; tollgate will retry', event: event.id, err: String(err) }));
    res.status(500).json({ error: 'failed' }); // tollgate retries with backoff
  }
});

// sendWelcomeOnce writes the welcome email to the outbox once per event id:
// tollgate forwards at least once, so the same event can arrive again (after
// a timeout, a restart, from another replica). The message is written to a
// temporary file and linked under the event's id: link() fails if that name
// exists, so of two deliveries, even at the same moment, exactly one wins.
// (With a real mail provider, send from this outbox, or pass the event id
// as the provider's idempotency key.)
async function sendWelcomeOnce(event) {
  const session = event.data.object;
  await fs.mkdir(outbox, { recursive: true });
  const final = path.join(outbox, `${event.id}.json`);
  const tmp = `${final}.${process.pid}.${Date.now()}.tmp`;
  await fs.writeFile(tmp, JSON.stringify({ template: 'welcome', customer: session.customer, event: event.id }));
  try {
    await fs.link(tmp, final);
    console.log(JSON.stringify({ msg: 'welcome email queued', event: event.id, customer: session.customer }));
    return 'sent';
  } catch (err) {
    if (err.code === 'EEXIST') return 'duplicate';
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
