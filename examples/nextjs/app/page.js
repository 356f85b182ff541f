import { identity } from '@/lib/tollgate';

export default async function Home() {
  const id = await identity();
  return (
    <>
      <h1>Example app</h1>
      <p data-testid="whoami">{id ? `Signed in as ${id.user}.` : 'Not signed in.'}</p>
    </>
  );
}
