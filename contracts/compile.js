#!/usr/bin/env node
// Compiles each contract of CONTRACTS with the pinned solcjs (package.json) into contracts/artifacts/<Name>.json.
//
//   node contracts/compile.js                  write every artifact
//   node contracts/compile.js --stdout [NAME]  print one (default MUSD) instead (the drift test compares it)
//   node contracts/compile.js --check          exit 1 when a committed artifact differs from a fresh build
//
// Each contract is compiled alone, from its own source file, so adding one changes no other artifact.
//
// The artifact is committed (not under build/, which .gitignore excludes) so Python code (sandbox/chain) deploys without node at run time; solcjs is
// WebAssembly, so the same source and settings give byte-identical output on every machine.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');
// name -> source (the source key is part of the metadata hash, so it is relative and fixed)
const CONTRACTS = {
  MUSD: 'contracts/MUSD.sol', // the MUSD stand-in of the local chain
  SmartAccount: 'contracts/SmartAccount.sol', // an EIP-1271 account for the wallet sign-in tests
};
const artifactPath = (name) => path.join(ROOT, 'contracts', 'artifacts', `${name}.json`);

const optimizer = { enabled: true, runs: 200 };
// Paris (no PUSH0/MCOPY): Mezo is an Evmos-based chain whose EVM may trail Ethereum's hardforks, and this
// keeps the same bytecode deployable there as well as on anvil.
const evmVersion = 'paris';

function build(name) {
  const source = CONTRACTS[name];
  const settings = {
    optimizer,
    evmVersion,
    outputSelection: { [source]: { [name]: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  };
  const input = {
    language: 'Solidity',
    sources: { [source]: { content: fs.readFileSync(path.join(ROOT, source), 'utf8') } },
    settings,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  for (const problem of problems) process.stderr.write(problem.formattedMessage + '\n');
  if (problems.some((p) => p.severity === 'error')) process.exit(1);
  const contract = output.contracts[source][name];
  const artifact = {
    contractName: name,
    sourceName: source,
    compiler: { name: 'solcjs', version: solc.version(), settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion } },
    abi: contract.abi,
    bytecode: '0x' + contract.evm.bytecode.object,
    deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
  };
  return JSON.stringify(artifact, null, 2) + '\n';
}

const mode = process.argv[2];
if (mode === '--stdout') {
  const name = process.argv[3] || 'MUSD';
  if (!(name in CONTRACTS)) {
    process.stderr.write(`unknown contract ${name}; known: ${Object.keys(CONTRACTS).join(', ')}\n`);
    process.exit(2);
  }
  process.stdout.write(build(name));
} else if (mode === '--check') {
  let stale = false;
  for (const name of Object.keys(CONTRACTS)) {
    const file = artifactPath(name);
    const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (committed !== build(name)) {
      process.stderr.write(`${path.relative(ROOT, file)} is out of date: run node contracts/compile.js\n`);
      stale = true;
    }
  }
  if (stale) process.exit(1);
} else if (mode === undefined) {
  for (const name of Object.keys(CONTRACTS)) {
    fs.mkdirSync(path.dirname(artifactPath(name)), { recursive: true });
    fs.writeFileSync(artifactPath(name), build(name));
  }
} else {
  process.stderr.write('usage: node contracts/compile.js [--stdout [NAME] | --check]\n');
  process.exit(2);
}
