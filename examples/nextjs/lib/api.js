// Helpers of the route handlers under app/api.
export function boundedInt(v, min, max) {
  if (v === null) return min;
  const n = Number(v);
  return Number.isInteger(n) && n >= min && n <= max ? n : null;
}

export function invalid(message) {
  return Response.json({ error: { code: 'invalid_request', message } }, { status: 400 });
}

export function noIdentity() {
  return Response.json({ error: { code: 'no_identity', message: 'No X-Tollgate-User: this request did not pass an auth: required route of tollgate.' } }, { status: 401 });
}
