// The plans the billing page offers. Their prices, features and limits live
// in tollgate's config and in Stripe; this is only what the page shows.
export const PLANS = [
  { id: 'starter', name: 'Starter', price: '$20 / month', blurb: 'Reports, 1,000 API calls a month' },
  { id: 'pro', name: 'Pro', price: '$80 / month', blurb: 'Reports and exports, 100,000 API calls a month' },
];
