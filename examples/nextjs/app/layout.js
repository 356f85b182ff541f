export const metadata = { title: 'Example app' };

const css = `body{font:15px system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
.banner{background:#fee;border:1px solid #c33;padding:.6rem;margin-bottom:1rem}
.note{background:#eef4ff;border:1px solid #8ab;padding:.6rem}
.plans{list-style:none;padding:0;display:flex;gap:1rem}.plans li{border:1px solid #ccc;padding:.8rem;flex:1}
.plans li>form,.plans li>em{display:block;margin-top:.4rem}
.actions{display:flex;flex-direction:column;align-items:flex-start;gap:.6rem}
.actions form,.confirm{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem}
section{border:2px solid #36c;padding:.8rem;margin:1rem 0}section h2{margin-top:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dd{margin:0;font-weight:600}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:left}.amount{text-align:right}`;

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <head><style>{css}</style></head>
      <body>
        <nav><a href="/">Home</a> · <a href="/reports">Reports</a> · <a href="/billing">Billing</a></nav>
        {children}
      </body>
    </html>
  );
}
