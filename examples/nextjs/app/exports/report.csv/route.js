import { identityFrom } from '@/lib/tollgate';

export async function GET(request) {
  const id = identityFrom(request.headers);
  if (!id?.features.includes('exports')) {
    return Response.json({ error: { code: 'feature_required', message: 'This needs the exports feature.' } }, { status: 403 });
  }
  return new Response('day,calls\n2024-01-01,42\n', { headers: { 'Content-Type': 'text/csv' } });
}
