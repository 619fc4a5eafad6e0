#!/usr/bin/env node
// Compiles contracts/MUSD.sol with the pinned solcjs (package.json) into contracts/artifacts/MUSD.json.
//
//   node contracts/compile.js            write the artifact
//   node contracts/compile.js --stdout   print it instead (the drift test compares this with the committed file)
//   node contracts/compile.js --check    exit 1 when the committed artifact differs from a fresh build
//
// The artifact is committed (not under build/, which .gitignore excludes) so Python code (sandbox/chain) deploys without node at run time; solcjs is
// WebAssembly, so the same source and settings give byte-identical output on every machine.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');
const SOURCE = 'contracts/MUSD.sol'; // the key is part of the metadata hash, so it is relative and fixed
const ARTIFACT = path.join(ROOT, 'contracts', 'artifacts', 'MUSD.json');
const CONTRACT = 'MUSD';

const settings = {
  optimizer: { enabled: true, runs: 200 },
  // Paris (no PUSH0/MCOPY): Mezo is an Evmos-based chain whose EVM may trail Ethereum's hardforks, and this
  // keeps the same bytecode deployable there as well as on anvil.
  evmVersion: 'paris',
  outputSelection: { [SOURCE]: { [CONTRACT]: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

function build() {
  const input = {
    language: 'Solidity',
    sources: { [SOURCE]: { content: fs.readFileSync(path.join(ROOT, SOURCE), 'utf8') } },
    settings,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  for (const problem of problems) process.stderr.write(problem.formattedMessage + '\n');
  if (problems.some((p) => p.severity === 'error')) process.exit(1);
  const contract = output.contracts[SOURCE][CONTRACT];
  const artifact = {
    contractName: CONTRACT,
    sourceName: SOURCE,
    compiler: { name: 'solcjs', version: solc.version(), settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion } },
    abi: contract.abi,
    bytecode: '0x' + contract.evm.bytecode.object,
    deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
  };
  return JSON.stringify(artifact, null, 2) + '\n';
}

const text = build();
const mode = process.argv[2];
if (mode === '--stdout') {
  process.stdout.write(text);
} else if (mode === '--check') {
  const committed = fs.existsSync(ARTIFACT) ? fs.readFileSync(ARTIFACT, 'utf8') : '';
  if (committed !== text) {
    process.stderr.write(`${path.relative(ROOT, ARTIFACT)} is out of date: run node contracts/compile.js\n`);
    process.exit(1);
  }
} else if (mode === undefined) {
  fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
  fs.writeFileSync(ARTIFACT, text);
} else {
  process.stderr.write('usage: node contracts/compile.js [--stdout | --check]\n');
  process.exit(2);
}
