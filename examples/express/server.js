// An Express app behind tollgate. tollgate authenticates every request,
// gates it on the customer's Stripe subscription, forwards it with the
// verified identity in X-Tollgate-* headers, and meters it; it also serves
// the billing API the billing page uses and forwards Stripe's events to
// /webhooks/tollgate. This app never talks to Stripe.
import express from 'express';
import { behindTollgate, listen, reportUsage, requireFeature, requireUser } from './tollgate.js';
import { router as billingRouter, page, esc } from './billing.js';
import { router as webhookRouter } from './webhooks.js';

if (!process.env.TOLLGATE_FORWARD_SECRET) throw new Error('TOLLGATE_FORWARD_SECRET is not set (tollgate\'s webhook.forward_secret)');

const app = express();
app.disable('x-powered-by');
app.use(behindTollgate);

app.get('/healthz', (req, res) => res.send('ok'));
app.use('/webhooks/tollgate', webhookRouter);
app.use('/billing', billingRouter);

app.get('/', (req, res) => {
  const id = req.tollgate;
  res.send(page('Example app', id
    ? `<p data-testid="whoami">Signed in as ${esc(id.user)}.</p>`
    : '<p data-testid="whoami">Not signed in.</p>'));
});

// A feature-gated page: tollgate's route requires the reports feature; the
// exports link shows only to customers whose plan has exports.
app.get('/reports', requireFeature('reports'), (req, res) => {
  const exportsLink = req.tollgate.features.includes('exports')
    ? '<a data-testid="exports" href="/exports/report.csv">Export as CSV</a>'
    : '<p data-testid="no-exports">Exports come with the Pro plan. <a href="/billing">Upgrade</a></p>';
  res.send(page('Reports', `<p data-testid="report">Report for ${esc(req.tollgate.customer)} on the ${esc(req.tollgate.plan)} plan.</p>${exportsLink}`));
});

app.get('/exports/report.csv', requireFeature('exports'), (req, res) => {
  res.type('text/csv').send('day,calls\n2024-01-01,42\n');
});

// Metered: one unit per generated row, reported in X-Tollgate-Usage.
app.get('/api/generate', requireUser, (req, res) => {
  const rows = boundedInt(req.query.rows, 1, 1000);
  if (rows === null) return res.status(400).json({ error: { code: 'invalid_request', message: 'rows must be 1..1000' } });
  reportUsage(res, rows);
  res.json({ rows: Array.from({ length: rows }, (_, i) => ({ n: i + 1 })) });
});

// Metered and streamed: the units are known only at the end (as with LLM
// tokens), so they go in a trailer, declared before the body starts.
app.get('/api/stream', requireUser, async (req, res) => {
  const tokens = boundedInt(req.query.tokens, 1, 1000);
  if (tokens === null) return res.status(400).json({ error: { code: 'invalid_request', message: 'tokens must be 1..1000' } });
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Trailer: 'X-Tollgate-Usage' });
  for (let i = 1; i <= tokens; i++) {
    res.write(`data: token ${i}\n\n`);
    await new Promise((r) => setImmediate(r));
  }
  res.addTrailers({ 'X-Tollgate-Usage': String(tokens) });
  res.end();
});

function boundedInt(v, min, max) {
  if (v === undefined) return min;
  const n = Number(v);
  return Number.isInteger(n) && n >= min && n <= max ? n : null;
}

const port = process.env.PORT ?? 3000;
listen(app, port).on('listening', () => console.log(JSON.stringify({ msg: 'example app listening', port })));
