import { boundedInt, invalid, noIdentity } from '@/lib/api';
import { identityFrom, usageHeaders } from '@/lib/tollgate';

// Metered: one unit per generated row, reported in X-Tollgate-Usage.
export async function GET(request) {
  if (!identityFrom(request.headers)) return noIdentity();
  const rows = boundedInt(request.nextUrl.searchParams.get('rows'), 1, 1000);
  if (rows === null) return invalid('rows must be 1..1000');
  return Response.json({ rows: Array.from({ length: rows }, (_, i) => ({ n: i + 1 })) }, { headers: usageHeaders(rows) });
}
