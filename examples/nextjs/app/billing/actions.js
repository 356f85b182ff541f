'use server';
// The billing page's buttons: each makes one billing API call and goes back
// to the page (or on to Stripe's Checkout and portal pages). Next.js checks
// that a Server Action comes from the page's own origin, which matters
// because the token cookie would ride along on a cross-site form post.
import { redirect } from 'next/navigation';
import { billing } from '@/lib/tollgate';
import { pauseBody } from '@/lib/pause';

async function run(formData, method, path, body) {
  const { status, data } = await billing(method, path, body, formData.get('idem') || undefined);
  if (status !== 200) redirect('/billing?error=' + encodeURIComponent(data.error?.code ?? 'failed'));
  redirect(data.url ?? '/billing');
}

export async function checkout(formData) {
  await run(formData, 'POST', 'checkout', { plan: String(formData.get('plan')) });
}

export async function portal(formData) {
  await run(formData, 'POST', 'portal');
}

// change confirms a previewed plan change at the preview's proration_date,
// so the change bills what the customer saw.
export async function change(formData) {
  await run(formData, 'POST', 'subscription/change',
    { plan: String(formData.get('plan')), proration_date: Number(formData.get('proration_date')) });
}

export async function cancel(formData) {
  await run(formData, 'POST', 'subscription/cancel');
}

export async function resume(formData) {
  await run(formData, 'POST', 'subscription/resume');
}

// pause pauses payments and access, until the day picked or until resumed.
export async function pause(formData) {
  const body = pauseBody(formData.get('resumes_on'));
  if (body === null) redirect('/billing?error=invalid_date');
  await run(formData, 'POST', 'subscription/pause', body);
}
