// Running the two Prisma CLIs this package pins: 7.3.x (the application's
// version) and the newest 7.x (npm alias "prisma-latest"), always by path so
// that neither shadows the other in node_modules/.bin.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { APP_DIR } from './paths.mjs';

export const CLIS = {
  pinned: path.join(APP_DIR, 'node_modules', 'prisma'),
  latest: path.join(APP_DIR, 'node_modules', 'prisma-latest'),
};

export function cliVersion(which) {
  return JSON.parse(fs.readFileSync(path.join(CLIS[which], 'package.json'), 'utf8')).version;
}

// Prisma 7's validate, format and generate run on WebAssembly, but the CLI
// first looks for its schema-engine binary and would try to download it.
// Any existing file lets them proceed; they never execute it.
export function prismaEnv() {
  const engine = process.env.PRISMA_SCHEMA_ENGINE_BINARY || '/bin/true';
  if (!fs.existsSync(engine)) {
    throw new Error(`PRISMA_SCHEMA_ENGINE_BINARY: ${engine} does not exist`);
  }
  return {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY: engine,
    CHECKPOINT_DISABLE: '1',
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
    NO_COLOR: '1',
  };
}

export function runPrisma(which, args) {
  const res = spawnSync(process.execPath, [path.join(CLIS[which], 'build', 'index.js'), ...args], {
    cwd: APP_DIR, env: prismaEnv(), encoding: 'utf8', timeout: 120_000,
  });
  return { status: res.status, output: `${res.stdout ?? ''}${res.stderr ?? ''}`, error: res.error };
}

export function runPrismaOk(which, args) {
  const res = runPrisma(which, args);
  if (res.status !== 0) {
    throw new Error(`prisma ${cliVersion(which)} ${args.join(' ')} failed (exit ${res.status}):\n${res.output}${res.error ?? ''}`);
  }
  return res.output;
}

// The same, without blocking the event loop (lets independent runs overlap).
export function runPrismaAsync(which, args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(CLIS[which], 'build', 'index.js'), ...args], {
      cwd: APP_DIR, env: prismaEnv(), encoding: 'utf8', timeout: 180_000, maxBuffer: 16 << 20,
    }, (error, stdout, stderr) => {
      resolve({ status: error ? (error.code ?? 1) : 0, output: `${stdout ?? ''}${stderr ?? ''}`, error });
    });
  });
}

export async function runPrismaAsyncOk(which, args) {
  const res = await runPrismaAsync(which, args);
  if (res.status !== 0) {
    throw new Error(`prisma ${cliVersion(which)} ${args.join(' ')} failed (exit ${res.status}):\n${res.output}`);
  }
  return res.output;
}
