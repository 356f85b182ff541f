// Dates (ISO strings or Unix seconds) and amounts (smallest currency unit)
// as the billing page shows them.
export function date(v) {
  if (!v) return '';
  const d = typeof v === 'number' ? new Date(v * 1000) : new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 10);
}

export function money(amount, currency) {
  if (typeof amount !== 'number' || !currency) return '';
  return new Intl.NumberFormat('en-US', { style: 'currency', currency }).format(amount / 100);
}

export function trialLeft(days) {
  return days === 0 ? 'No days left' : days === 1 ? '1 day left' : `${days} days left`;
}
