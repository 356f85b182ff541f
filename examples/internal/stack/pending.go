package stack

// Parts of the contract (README "Billing API", "Paths and headers") that
// other branches are adding. The example apps are written to the contract
// already; the tests check each part once its flag is true, so enabling one
// is this one-line change.
const (
	// POST subscription/preview answers due_now (what the change charges at once).
	PreviewDueNow = false
	// GET subscription answers trial_days_left and payment_failed
	// (attempt_count, next_payment_attempt, hosted_invoice_url).
	SubscriptionTrialAndDunning = false
	// POST subscription/pause exists.
	Pause = false
	// Units an upstream declares in an X-Tollgate-Usage trailer are billed
	// (until then a streamed answer is billed the route's 1 unit).
	TrailerUsage = false
)
