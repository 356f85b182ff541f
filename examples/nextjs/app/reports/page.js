import { requireIdentity } from '@/lib/tollgate';

// A feature-gated page: tollgate's route requires the reports feature; the
// exports link shows only to customers whose plan has exports.
export default async function Reports() {
  const id = await requireIdentity();
  if (!id.features.includes('reports')) throw new Error('This page needs the reports feature.');
  return (
    <>
      <h1>Reports</h1>
      <p data-testid="report">Report for {id.customer} on the {id.plan} plan.</p>
      {id.features.includes('exports')
        ? <a data-testid="exports" href="/exports/report.csv">Export as CSV</a>
        : <p data-testid="no-exports">Exports come with the Pro plan. <a href="/billing">Upgrade</a></p>}
    </>
  );
}
