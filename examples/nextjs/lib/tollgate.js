// The app's side of tollgate: who is calling (the identity tollgate
// verified), the billing API (tollgate talks to Stripe, this app never
// does), and usage.
//
// tollgate removes every X-Tollgate-* header a client sends and sets its
// own, so these headers can be trusted exactly as far as the app cannot be
// reached except through tollgate. `npm start` binds the server to
// 127.0.0.1 (next start -H 127.0.0.1); in a Kubernetes pod, or with
// compose's network_mode: "service:tollgate", loopback is shared with the
// tollgate sidecar and nothing else. Never run it with -H 0.0.0.0.
import { headers } from 'next/headers';

const TOLLGATE_URL = process.env.TOLLGATE_URL ?? 'http://127.0.0.1:8080';
const BILLING_PREFIX = process.env.TOLLGATE_BILLING_PREFIX ?? '/_tollgate/billing';

// identityFrom reads the verified identity from request headers; null for
// a request tollgate forwarded without a user (an auth: none route).
export function identityFrom(h) {
  const user = h.get('x-tollgate-user');
  if (!user) return null;
  const features = h.get('x-tollgate-features');
  return {
    user,
    customer: h.get('x-tollgate-customer'),
    plan: h.get('x-tollgate-plan'),
    status: h.get('x-tollgate-status'),
    features: features ? features.split(',') : [],
  };
}

// identity is the caller of the page or action being rendered.
export async function identity() {
  return identityFrom(await headers());
}

// requireIdentity refuses to render without a verified user: the route is
// not auth: required in tollgate's config, or tollgate is not in front.
export async function requireIdentity() {
  const id = await identity();
  if (!id) {
    throw new Error('No X-Tollgate-User: this request did not pass an auth: required route of tollgate.');
  }
  return id;
}

// usageHeaders tells tollgate how many units an answer costs (instead of
// the route's 1); tollgate removes the header before the client sees it.
export function usageHeaders(units, extra = {}) {
  return { ...extra, 'X-Tollgate-Usage': String(units) };
}

// billing calls tollgate's billing API as the caller: it passes on the
// credential tollgate forwarded (Authorization or the token cookie), so
// tollgate acts for that user and no one else. Answers {status, data}.
export async function billing(method, path, body, idempotencyKey) {
  const h = await headers();
  const out = { accept: 'application/json' };
  for (const name of ['authorization', 'cookie', 'x-request-id']) {
    if (h.get(name)) out[name] = h.get(name);
  }
  if (body !== undefined) out['content-type'] = 'application/json';
  if (idempotencyKey) out['idempotency-key'] = idempotencyKey;
  const res = await fetch(TOLLGATE_URL + BILLING_PREFIX + '/' + path, {
    method, headers: out, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({ error: { code: 'bad_answer', message: `tollgate answered ${res.status}` } }));
  return { status: res.status, data };
}
