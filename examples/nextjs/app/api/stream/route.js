import { boundedInt, invalid, noIdentity } from '@/lib/api';
import { identityFrom, usageHeaders } from '@/lib/tollgate';

// Metered and streamed (server-sent events). A route handler answers a Web
// Response, which has no HTTP trailers, so the units go in the header and
// must be known before the body starts; for units known only at the end
// (LLM tokens), serve that endpoint from a plain Node server or the
// Express example's pattern (Trailer: X-Tollgate-Usage).
export async function GET(request) {
  if (!identityFrom(request.headers)) return noIdentity();
  const tokens = boundedInt(request.nextUrl.searchParams.get('tokens'), 1, 1000);
  if (tokens === null) return invalid('tokens must be 1..1000');
  const enc = new TextEncoder();
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      i++;
      controller.enqueue(enc.encode(`data: token ${i}\n\n`));
      if (i === tokens) controller.close();
    },
  });
  return new Response(body, { headers: usageHeaders(tokens, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' }) });
}
