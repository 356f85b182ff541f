// The billing settings page, built only on tollgate's billing API: the page
// reads the subscription, usage and invoices from tollgate on the server,
// and every button is a Server Action (./actions.js) that makes one billing
// API call. The forms work without JavaScript too.
import { randomUUID } from 'node:crypto';
import { billing, requireIdentity } from '@/lib/tollgate';
import { date, money } from '@/lib/format';
import { PLANS } from '@/lib/plans';
import * as act from './actions';

export default async function BillingPage({ searchParams }) {
  await requireIdentity();
  const { preview: previewPlan, error } = await searchParams;
  const [sub, usage, invoices] = await Promise.all([
    billing('GET', 'subscription'),
    billing('GET', 'usage'),
    billing('GET', 'invoices?limit=10'),
  ]);
  if (sub.status !== 200) return <p role="alert">Billing is unavailable ({sub.data.error?.code}).</p>;
  const s = sub.data;
  const preview = PLANS.some((p) => p.id === previewPlan)
    ? await billing('POST', 'subscription/preview', { plan: previewPlan })
    : null;
  const idem = randomUUID(); // a double-submitted form replays the first answer
  const pf = s.payment_failed;
  return (
    <>
      <h1>Billing</h1>
      {error && <p role="alert" data-testid="error">That did not work: {error}.</p>}
      {pf && (
        <div className="banner" data-testid="payment-failed">
          Your last payment failed (attempt {pf.attempt_count})
          {pf.next_payment_attempt ? `; we retry on ${date(pf.next_payment_attempt)}` : ''}.{' '}
          <a href={pf.hosted_invoice_url}>Fix your payment</a>
        </div>
      )}
      <h2>Your plan</h2>
      <dl>
        <dt>Plan</dt><dd data-testid="plan">{s.plan || 'none'}</dd>
        <dt>Status</dt><dd data-testid="status">{s.status || 'not subscribed'}</dd>
      </dl>
      {s.status === 'trialing' && s.trial_days_left != null && <p data-testid="trial">{s.trial_days_left} days left in your trial.</p>}
      {s.cancel_at_period_end && <p data-testid="canceling">Your subscription ends on {date(s.current_period_end)}.</p>}
      {s.pending_change && <p data-testid="pending-change">Switches to {s.pending_change.plan} on {date(s.pending_change.effective_at)}.</p>}
      {preview && <Preview preview={preview} idem={idem} />}
      <h2>Plans</h2>
      <ul className="plans">
        {PLANS.map((p) => (
          <li key={p.id}>
            <strong>{p.name}</strong> {p.price}<br /><small>{p.blurb}</small>
            {!s.subscription
              ? <Button action={act.checkout} idem={idem} testid={`checkout-${p.id}`} fields={{ plan: p.id }}>Subscribe to {p.name}</Button>
              : p.id === s.plan
                ? <em>Current plan</em>
                : <form method="get" action="/billing"><input type="hidden" name="preview" value={p.id} /><button data-testid={`preview-${p.id}`}>Switch to {p.name}</button></form>}
          </li>
        ))}
      </ul>
      {s.subscription && (
        <>
          <h2>Manage</h2>
          <div className="actions">
            <Button action={act.portal} idem={idem} testid="portal">Payment methods and billing details</Button>
            {s.cancel_at_period_end || s.status === 'paused'
              ? <Button action={act.resume} idem={idem} testid="resume">Resume subscription</Button>
              : <>
                  <Button action={act.pause} idem={idem} testid="pause">Pause payments</Button>
                  <Button action={act.cancel} idem={idem} testid="cancel">Cancel at period end</Button>
                </>}
          </div>
        </>
      )}
      <h2>Usage this period</h2>
      {usage.status !== 200 && <p role="alert">Usage is unavailable ({usage.data.error?.code}).</p>}
      <table>
        <tbody>
          <tr><th>Meter</th><th>Used</th><th>Limit</th></tr>
          {(usage.data.meters ?? []).map((m) => (
            <tr key={m.meter} data-testid={`usage-${m.meter}`}><td>{m.meter}</td><td>{m.used ?? 0}</td><td>{m.limit ?? 'unlimited'}</td></tr>
          ))}
        </tbody>
      </table>
      <h2>Invoices</h2>
      {invoices.status !== 200 && <p role="alert">Invoices are unavailable ({invoices.data.error?.code}).</p>}
      <table>
        <tbody>
          {(invoices.data.data ?? []).map((inv) => (
            <tr key={inv.id} data-testid="invoice">
              <td>{inv.number}</td><td>{date(inv.created)}</td><td>{money(inv.total, inv.currency)}</td><td>{inv.status}</td>
              <td><a href={inv.hosted_invoice_url}>View</a> <a data-testid="invoice-pdf" href={inv.invoice_pdf}>PDF</a></td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

// Preview shows what a plan change costs before it is confirmed.
function Preview({ preview: { status, data }, idem }) {
  if (status !== 200) return <p role="alert" data-testid="error">No preview: {data.error?.code}.</p>;
  return (
    <section data-testid="preview">
      <h2>Switch to {data.plan}</h2>
      <p data-testid="applies">The change applies {data.applies === 'now' ? 'now' : `on ${date(data.effective_at)}`}.</p>
      {typeof data.due_now === 'number' && <p>Due now: <strong data-testid="due-now">{money(data.due_now, data.currency)}</strong></p>}
      <ul>{(data.lines ?? []).map((l, i) => <li key={i}>{l.description}: {money(l.amount, data.currency)}</li>)}</ul>
      <Button action={act.change} idem={idem} testid="confirm" fields={{ plan: data.plan, proration_date: data.proration_date }}>
        Confirm: switch to {data.plan}
      </Button>
      <a href="/billing">Keep my plan</a>
    </section>
  );
}

function Button({ action, idem, testid, fields = {}, children }) {
  return (
    <form action={action}>
      {Object.entries(fields).map(([k, v]) => <input key={k} type="hidden" name={k} value={v} />)}
      <input type="hidden" name="idem" value={idem} />
      <button data-testid={testid}>{children}</button>
    </form>
  );
}
