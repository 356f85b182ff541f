// The billing settings page, built only on tollgate's billing API: the page
// reads the subscription, usage and invoices from tollgate on the server,
// and every button is a Server Action (./actions.js) that makes one billing
// API call. The forms work without JavaScript too.
import { randomUUID } from 'node:crypto';
import { billing, requireIdentity } from '@/lib/tollgate';
import { date, money, trialLeft } from '@/lib/format';
import { firstPauseEnd } from '@/lib/pause';
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
        <div className="banner" role="alert" data-testid="payment-failed">
          {`Your payment of ${money(pf.amount_due, pf.currency)} failed (attempt ${pf.attempt_count}); `}
          {pf.next_payment_attempt ? `we try again on ${date(pf.next_payment_attempt)}. ` : 'it will not be retried. '}
          <a data-testid="fix-payment" href={pf.hosted_invoice_url}>Fix your payment</a>
        </div>
      )}
      <h2>Your plan</h2>
      <dl>
        <dt>Plan</dt><dd data-testid="plan">{s.plan || 'none'}</dd>
        <dt>Status</dt><dd data-testid="status">{s.status || 'not subscribed'}</dd>
      </dl>
      {s.trial_days_left != null && <p className="note" data-testid="trial">{`${trialLeft(s.trial_days_left)} in your trial (it ends on ${date(s.trial_end)}).`}</p>}
      {/* A pause keeps Stripe's status (active): pause_collection says it. */}
      {s.pause_collection && (
        <p className="note" data-testid="paused">
          {`Payments and access are paused ${s.pause_collection.resumes_at ? `until ${date(s.pause_collection.resumes_at)}` : 'until you resume'}.`}
        </p>
      )}
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
            {/* Stripe's own paused status (a trial that ended without a card) is resumed the same way. */}
            {s.cancel_at_period_end || s.pause_collection || s.status === 'paused'
              ? <Button action={act.resume} idem={idem} testid="resume">Resume subscription</Button>
              : <>
                  {(s.status === 'active' || s.status === 'trialing') && (
                    <Button action={act.pause} idem={idem} testid="pause" after={
                      <><label>until <input type="date" name="resumes_on" data-testid="resumes-on" min={firstPauseEnd()} /></label><small>(leave it empty to pause until you resume)</small></>
                    }>Pause payments</Button>
                  )}
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
          <tr><th>Invoice</th><th>Date</th><th className="amount">Total</th><th>Status</th><th></th></tr>
          {(invoices.data.data ?? []).map((inv) => (
            <tr key={inv.id} data-testid="invoice">
              <td>{inv.number}</td><td>{date(inv.created)}</td><td className="amount">{money(inv.total, inv.currency)}</td><td>{inv.status}</td>
              <td><a href={inv.hosted_invoice_url}>View</a>{inv.invoice_pdf && <> <a data-testid="invoice-pdf" href={inv.invoice_pdf}>PDF</a></>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

// Preview shows what a plan change costs before it is confirmed: what is
// charged at once and the next regular invoice. The change is made with the
// preview's proration_date, so it charges what the customer saw.
function Preview({ preview: { status, data }, idem }) {
  if (status !== 200) return <p role="alert" data-testid="error">No preview: {data.error?.code}.</p>;
  const { due_now: now, next_invoice: next } = data;
  return (
    <section data-testid="preview">
      <h2>Switch to {data.plan}</h2>
      <p data-testid="applies">The change applies {data.applies === 'now' ? 'now' : `on ${date(data.effective_at)}`}.</p>
      <p>Due now: <strong data-testid="due-now">{money(now.amount, now.currency)}</strong></p>
      {now.lines.length > 0 && <Lines invoice={now} />}
      {next && (
        <>
          <p>Next invoice, on {date(next.date)}: <strong data-testid="next-invoice">{money(next.amount, next.currency)}</strong></p>
          <Lines invoice={next} />
        </>
      )}
      {data.withdraws && <p>This keeps your plan and withdraws the switch to {data.withdraws.plan}.</p>}
      <div className="confirm">
        <Button action={act.change} idem={idem} testid="confirm" fields={{ plan: data.plan, proration_date: data.proration_date }}>
          Confirm: switch to {data.plan}
        </Button>
        <a href="/billing">Keep my plan</a>
      </div>
    </section>
  );
}

function Lines({ invoice }) {
  return <ul>{invoice.lines.map((l, i) => <li key={i}>{l.description}: {money(l.amount, invoice.currency)}</li>)}</ul>;
}

function Button({ action, idem, testid, fields = {}, after, children }) {
  return (
    <form action={action}>
      {Object.entries(fields).map(([k, v]) => <input key={k} type="hidden" name={k} value={v} />)}
      <input type="hidden" name="idem" value={idem} />
      <button data-testid={testid}>{children}</button>
      {after}
    </form>
  );
}
