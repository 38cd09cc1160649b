// Parse an AsyncAPI document with AsyncAPI's own parser (validation and its
// ruleset) and print its diagnostics as JSON: [{severity, code, path, message}],
// severity 0 being an error (then the exit status is 1), 1 a warning, 2 info, 3 a hint.
// Usage: node check.js <document.yaml>
"use strict";

const { Parser, fromFile } = require("@asyncapi/parser");

async function main(path) {
  const { diagnostics } = await fromFile(new Parser(), path).parse();
  const found = diagnostics.map(({ severity, code, path: at, message }) => ({
    severity,
    code,
    path: at.join("."),
    message,
  }));
  console.log(JSON.stringify(found, null, 1));
  process.exitCode = found.some(({ severity }) => severity === 0) ? 1 : 0;
}

main(process.argv[2]).catch((error) => {
  console.error(error);
  process.exitCode = 2;
});
