// The billing settings page, built only on tollgate's billing API: the
// page reads the subscription, usage and invoices from tollgate, and every
// button is a form whose handler makes one billing API call and redirects
// back (or to Stripe's Checkout and portal pages). Works without JavaScript.
import { randomUUID } from 'node:crypto';
import express from 'express';
import { billing, requireUser } from './tollgate.js';

// The plans the page offers. Their prices, features and limits live in
// tollgate's config and in Stripe; this is only what the page shows.
export const PLANS = [
  { id: 'starter', name: 'Starter', price: '$20 / month', blurb: 'Reports, 1,000 API calls a month' },
  { id: 'pro', name: 'Pro', price: '$80 / month', blurb: 'Reports and exports, 100,000 API calls a month' },
];

export const router = express.Router();
router.use(requireUser);
router.use(express.urlencoded({ extended: false, limit: '4kb' }));

router.get('/', async (req, res) => {
  const [sub, usage, invoices] = await Promise.all([
    billing(req, 'GET', 'subscription'),
    billing(req, 'GET', 'usage'),
    billing(req, 'GET', 'invoices?limit=10'),
  ]);
  if (sub.status !== 200) return res.status(502).send(page('Billing', `<p role="alert">Billing is unavailable (${esc(sub.data.error?.code)}).</p>`));
  let preview = null;
  if (typeof req.query.preview === 'string' && PLANS.some((p) => p.id === req.query.preview)) {
    preview = await billing(req, 'POST', 'subscription/preview', { plan: req.query.preview });
  }
  res.set('Cache-Control', 'no-store');
  res.send(page('Billing', render(sub.data, usage, invoices, preview, req.query.error)));
});

// Every POST is a button on the page. The session cookie can carry the
// token, so cross-site form posts are refused (CSRF); tollgate does the
// same for its own billing API, but here the app makes the call.
router.post('/:action', sameOrigin, async (req, res) => {
  const key = typeof req.body.idem === 'string' ? req.body.idem : undefined;
  const call = {
    checkout: () => ['checkout', { plan: String(req.body.plan) }],
    portal: () => ['portal'],
    // The preview's proration_date, so the change charges what the customer saw.
    change: () => ['subscription/change', { plan: String(req.body.plan), proration_date: Number(req.body.proration_date) }],
    cancel: () => ['subscription/cancel'],
    resume: () => ['subscription/resume'],
    pause: () => ['subscription/pause', pauseBody(req.body.resumes_on)],
  }[req.params.action];
  if (!call) return res.status(404).send(page('Not found', '<p>No such action.</p>'));
  const [path, body] = call();
  if (body === null) return res.redirect(303, '/billing?error=invalid_date');
  const { status, data } = await billing(req, 'POST', path, body, key);
  if (status !== 200) return res.redirect(303, '/billing?error=' + encodeURIComponent(data.error?.code ?? 'failed'));
  res.redirect(303, data.url ?? '/billing');
});

// pauseBody is the pause's body: until resumed when no date was picked,
// else until that day's start (UTC); null for a date that is not one.
export function pauseBody(day) {
  if (day === undefined || day === '') return undefined;
  if (typeof day !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(day)) return null;
  const at = Date.parse(day + 'T00:00:00Z');
  return Number.isNaN(at) ? null : { resumes_at: at / 1000 };
}

function sameOrigin(req, res, next) {
  const site = req.get('sec-fetch-site');
  const origin = req.get('origin');
  const ok = site ? site === 'same-origin' || site === 'none' : !origin || new URL(origin).host === req.get('host');
  if (!ok) return res.status(403).send(page('Forbidden', '<p>Cross-site request refused.</p>'));
  next();
}

function render(sub, usage, invoices, preview, error) {
  const has = Boolean(sub.subscription);
  const idem = randomUUID();
  const button = (action, label, fields = '', testid = action) =>
    `<form method="post" action="/billing/${action}">${fields}<input type="hidden" name="idem" value="${idem}"><button data-testid="${testid}">${label}</button></form>`;
  const out = [];
  if (error) out.push(`<p role="alert" data-testid="error">That did not work: ${esc(error)}.</p>`);
  const pf = sub.payment_failed;
  if (pf) {
    out.push(`<div class="banner" role="alert" data-testid="payment-failed">Your payment of ${money(pf.amount_due, pf.currency)} failed` +
      ` (attempt ${esc(pf.attempt_count)}); ` +
      (pf.next_payment_attempt ? `we try again on ${date(pf.next_payment_attempt)}.` : 'it will not be retried.') +
      ` <a data-testid="fix-payment" href="${esc(pf.hosted_invoice_url)}">Fix your payment</a></div>`);
  }
  out.push('<h2>Your plan</h2><dl>',
    `<dt>Plan</dt><dd data-testid="plan">${esc(sub.plan || 'none')}</dd>`,
    `<dt>Status</dt><dd data-testid="status">${esc(sub.status || 'not subscribed')}</dd>`, '</dl>');
  if (sub.trial_days_left != null) out.push(`<p class="note" data-testid="trial">${trialLeft(sub.trial_days_left)} in your trial (it ends on ${date(sub.trial_end)}).</p>`);
  // A pause keeps Stripe's status (active): pause_collection says it.
  if (sub.pause_collection) {
    out.push(`<p class="note" data-testid="paused">Payments and access are paused ${sub.pause_collection.resumes_at ? 'until ' + date(sub.pause_collection.resumes_at) : 'until you resume'}.</p>`);
  }
  if (sub.cancel_at_period_end) out.push(`<p data-testid="canceling">Your subscription ends on ${date(sub.current_period_end)}.</p>`);
  if (sub.pending_change) out.push(`<p data-testid="pending-change">Switches to ${esc(sub.pending_change.plan)} on ${date(sub.pending_change.effective_at)}.</p>`);
  if (preview) out.push(renderPreview(preview, button));
  out.push('<h2>Plans</h2><ul class="plans">');
  for (const p of PLANS) {
    let action = '';
    if (!has) action = button('checkout', `Subscribe to ${p.name}`, `<input type="hidden" name="plan" value="${p.id}">`, `checkout-${p.id}`);
    else if (p.id !== sub.plan) action = `<form method="get" action="/billing"><input type="hidden" name="preview" value="${p.id}"><button data-testid="preview-${p.id}">Switch to ${p.name}</button></form>`;
    else action = '<em>Current plan</em>';
    out.push(`<li><strong>${p.name}</strong> ${p.price}<br><small>${p.blurb}</small>${action}</li>`);
  }
  out.push('</ul>');
  if (has) {
    out.push('<h2>Manage</h2><div class="actions">', button('portal', 'Payment methods and billing details'));
    // Stripe's own paused status (a trial that ended without a card) is
    // resumed the same way.
    if (sub.cancel_at_period_end || sub.pause_collection || sub.status === 'paused') out.push(button('resume', 'Resume subscription'));
    else {
      if (sub.status === 'active' || sub.status === 'trialing') {
        out.push(`<form method="post" action="/billing/pause"><input type="hidden" name="idem" value="${idem}"><button data-testid="pause">Pause payments</button>` +
          `<label>until <input type="date" name="resumes_on" data-testid="resumes-on" min="${firstPauseEnd()}"></label><small>(leave it empty to pause until you resume)</small></form>`);
      }
      out.push(button('cancel', 'Cancel at period end'));
    }
    out.push('</div>');
  }
  out.push('<h2>Usage this period</h2>');
  if (usage.status !== 200) out.push(`<p role="alert">Usage is unavailable (${esc(usage.data.error?.code)}).</p>`);
  out.push('<table><tr><th>Meter</th><th>Used</th><th>Limit</th></tr>');
  for (const m of usage.data.meters ?? []) {
    out.push(`<tr data-testid="usage-${esc(m.meter)}"><td>${esc(m.meter)}</td><td>${m.used ?? 0}</td><td>${m.limit ?? 'unlimited'}</td></tr>`);
  }
  out.push('</table><h2>Invoices</h2>');
  if (invoices.status !== 200) out.push(`<p role="alert">Invoices are unavailable (${esc(invoices.data.error?.code)}).</p>`);
  out.push('<table><tr><th>Invoice</th><th>Date</th><th class="amount">Total</th><th>Status</th><th></th></tr>');
  for (const inv of invoices.data.data ?? []) {
    out.push(`<tr data-testid="invoice"><td>${esc(inv.number)}</td><td>${date(inv.created)}</td><td class="amount">${money(inv.total, inv.currency)}</td><td>${esc(inv.status)}</td>` +
      `<td><a href="${esc(inv.hosted_invoice_url)}">View</a>${inv.invoice_pdf ? ` <a data-testid="invoice-pdf" href="${esc(inv.invoice_pdf)}">PDF</a>` : ''}</td></tr>`);
  }
  out.push('</table>');
  return out.join('\n');
}

// renderPreview shows what a plan change costs before it is confirmed:
// what is charged at once and the next regular invoice. The change is made
// with the preview's proration_date, so it charges what the customer saw.
function renderPreview({ status, data }, button) {
  if (status !== 200) return `<p role="alert" data-testid="error">No preview: ${esc(data.error?.code)}.</p>`;
  const when = data.applies === 'now' ? 'now' : `on ${date(data.effective_at)}`;
  const lines = (inv) => `<ul>${inv.lines.map((l) => `<li>${esc(l.description)}: ${money(l.amount, inv.currency)}</li>`).join('')}</ul>`;
  const next = data.next_invoice;
  return `<section data-testid="preview"><h2>Switch to ${esc(data.plan)}</h2>` +
    `<p data-testid="applies">The change applies ${when}.</p>` +
    `<p>Due now: <strong data-testid="due-now">${money(data.due_now.amount, data.due_now.currency)}</strong></p>` +
    (data.due_now.lines.length ? lines(data.due_now) : '') +
    (next ? `<p>Next invoice, on ${date(next.date)}: <strong data-testid="next-invoice">${money(next.amount, next.currency)}</strong></p>` + lines(next) : '') +
    (data.withdraws ? `<p>This keeps your plan and withdraws the switch to ${esc(data.withdraws.plan)}.</p>` : '') +
    '<div class="confirm">' + button('change', `Confirm: switch to ${esc(data.plan)}`,
      `<input type="hidden" name="plan" value="${esc(data.plan)}"><input type="hidden" name="proration_date" value="${esc(data.proration_date)}">`, 'confirm') +
    '<a href="/billing">Keep my plan</a></div></section>';
}

export function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>${CSS}</style></head>
<body><nav><a href="/">Home</a> · <a href="/reports">Reports</a> · <a href="/billing">Billing</a></nav><h1>${esc(title)}</h1>${body}</body></html>`;
}

const CSS = `body{font:15px system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
.banner{background:#fee;border:1px solid #c33;padding:.6rem;margin-bottom:1rem}
.note{background:#eef4ff;border:1px solid #8ab;padding:.6rem}
.plans{list-style:none;padding:0;display:flex;gap:1rem}.plans li{border:1px solid #ccc;padding:.8rem;flex:1}
.plans li>form,.plans li>em{display:block;margin-top:.4rem}
.actions{display:flex;flex-direction:column;align-items:flex-start;gap:.6rem}
.actions form,.confirm{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem}
section{border:2px solid #36c;padding:.8rem;margin:1rem 0}section h2{margin-top:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dd{margin:0;font-weight:600}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:left}.amount{text-align:right}`;

export function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function trialLeft(days) {
  return days === 0 ? 'No days left' : days === 1 ? '1 day left' : `${days} days left`;
}

// firstPauseEnd is the first day a pause may end on: tollgate wants
// resumes_at at least an hour ahead.
function firstPauseEnd() {
  const day = 24 * 3600 * 1000;
  return new Date(Math.ceil((Date.now() + 3600 * 1000) / day) * day).toISOString().slice(0, 10);
}

function date(v) {
  if (!v) return '';
  const d = typeof v === 'number' ? new Date(v * 1000) : new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 10);
}

function money(amount, currency) {
  if (typeof amount !== 'number' || !currency) return '';
  return new Intl.NumberFormat('en-US', { style: 'currency', currency }).format(amount / 100);
}
