// The pause form's date: an optional day on which payments and access
// resume by themselves.

// pauseBody is the pause's body: until resumed when no date was picked,
// else until that day's start (UTC); null for a date that is not one.
export function pauseBody(day) {
  if (day === null || day === '') return undefined;
  if (typeof day !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(day)) return null;
  const at = Date.parse(day + 'T00:00:00Z');
  return Number.isNaN(at) ? null : { resumes_at: at / 1000 };
}

// firstPauseEnd is the first day a pause may end on: tollgate wants
// resumes_at at least an hour ahead.
export function firstPauseEnd() {
  const day = 24 * 3600 * 1000;
  return new Date(Math.ceil((Date.now() + 3600 * 1000) / day) * day).toISOString().slice(0, 10);
}
