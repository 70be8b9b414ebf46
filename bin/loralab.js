#!/usr/bin/env node
// Runs the compiled CLI (built into dist/ by `npm install` through the `prepare` script).
import { main } from "../dist/lib/cli/main.js";
main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
