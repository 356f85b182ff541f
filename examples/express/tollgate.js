// The app's side of tollgate: who is calling (the identity tollgate verified),
// the billing API (tollgate talks to Stripe, this app never does), and usage.
//
// tollgate removes every X-Tollgate-* header a client sends and sets its own,
// so these headers can be trusted exactly as far as the app is unreachable
// except through tollgate: listen() binds to loopback only (in a Kubernetes
// pod, or with compose's network_mode: "service:tollgate", loopback is shared
// with the tollgate sidecar and nothing else), and behindTollgate refuses any
// request whose TCP peer is not on loopback, in case the app was started on a
// public address anyway.

export const TOLLGATE_URL = process.env.TOLLGATE_URL ?? 'http://127.0.0.1:8080';
const BILLING_PREFIX = process.env.TOLLGATE_BILLING_PREFIX ?? '/_tollgate/billing';

export function isLoopback(addr) {
  if (!addr) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === 'localhost' || a === '::1' || /^127\.\d+\.\d+\.\d+$/.test(a);
}

// listen starts the app on host:port and refuses a host that is not loopback.
export function listen(app, port, host = process.env.HOST ?? '127.0.0.1') {
  if (!isLoopback(host)) {
    throw new Error(`refusing to listen on ${host}: the app must be reachable only through tollgate; bind it to 127.0.0.1`);
  }
  return app.listen(Number(port), host);
}

// behindTollgate is the first middleware: it refuses requests that did not
// come over loopback and puts the verified identity on req.tollgate (null
// for a request tollgate forwarded without a user: an auth: none route).
export function behindTollgate(req, res, next) {
  if (!isLoopback(req.socket.remoteAddress)) {
    return res.status(403).json({ error: { code: 'not_through_tollgate', message: 'This app is served only through tollgate.' } });
  }
  req.tollgate = identity(req);
  next();
}

function identity(req) {
  const user = req.get('x-tollgate-user');
  if (!user) return null;
  const features = req.get('x-tollgate-features');
  return {
    user,
    customer: req.get('x-tollgate-customer') ?? null,
    plan: req.get('x-tollgate-plan') ?? null,
    status: req.get('x-tollgate-status') ?? null,
    features: features ? features.split(',') : [],
  };
}

// requireUser refuses to run a handler without a verified user: the route
// is not auth: required in tollgate's config, or tollgate is not in front.
export function requireUser(req, res, next) {
  if (!req.tollgate) {
    return res.status(401).json({ error: { code: 'no_identity', message: 'No X-Tollgate-User: this request did not pass an auth: required route of tollgate.' } });
  }
  next();
}

// requireFeature repeats tollgate's gate in the app (the route's require in
// tollgate's config is what enforces it; this guards a route that was left
// out of the config).
export function requireFeature(feature) {
  return [requireUser, (req, res, next) => {
    if (!req.tollgate.features.includes(feature)) {
      return res.status(403).json({ error: { code: 'feature_required', message: `This needs the ${feature} feature.` } });
    }
    next();
  }];
}

// reportUsage tells tollgate how many units this answer costs (instead of
// the route's 1); tollgate removes the header before the client sees it.
export function reportUsage(res, units) {
  res.set('X-Tollgate-Usage', String(units));
}

// billing calls tollgate's billing API as the caller: it passes on the
// credential tollgate forwarded (Authorization or the token cookie), so
// tollgate acts for that user and no one else. Answers {status, data}.
export async function billing(req, method, path, body, idempotencyKey) {
  const headers = { accept: 'application/json' };
  for (const h of ['authorization', 'cookie', 'x-request-id']) {
    if (req.get(h)) headers[h] = req.get(h);
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  const res = await fetch(TOLLGATE_URL + BILLING_PREFIX + '/' + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({ error: { code: 'bad_answer', message: `tollgate answered ${res.status}` } }));
  return { status: res.status, data };
}
