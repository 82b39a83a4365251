// Clients for the suite. Connection strings come from the environment (the
// pytest driver, tests/app/test_prisma_client.py, sets them):
//   FORGEA_DSN_APP, FORGEA_DSN_WORKER, FORGEA_DSN_READONLY, FORGEA_DSN_OWNER
//       a production database migrated by the pack (LOGIN members of
//       forgea_app / forgea_worker / forgea_readonly, and the migration owner)
//   FORGEA_FRESH_DSN_OWNER   a database built by the chain alone (catalog check)
import { createRequire } from 'node:module';
import path from 'node:path';
import pg from 'pg';
import { APP_CLIENT_DIR, APP_DIR, PACK_CLIENT_DIR } from './paths.mjs';

const require = createRequire(path.join(APP_DIR, 'package.json'));
const { PrismaPg } = require('@prisma/adapter-pg');

export function dsn(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run the suite through pytest, see tests/app/test_prisma_client.py)`);
  return value;
}

const ROLE_ENV = {
  app: 'FORGEA_DSN_APP',
  worker: 'FORGEA_DSN_WORKER',
  readonly: 'FORGEA_DSN_READONLY',
  owner: 'FORGEA_DSN_OWNER',
};

export function roleDsn(role) {
  return dsn(ROLE_ENV[role]);
}

// The application's CURRENT client (generated from the upstream schema).
export function loadAppClientModule() {
  return require(APP_CLIENT_DIR);
}

// The NEW client (generated from prisma/schema.prisma).
export function loadPackClientModule() {
  return require(PACK_CLIENT_DIR);
}

const open = [];

// As the app constructs it (app/db.ts): the pg driver adapter, no engine.
function connect(mod, role) {
  const prisma = new mod.PrismaClient({ adapter: new PrismaPg({ connectionString: roleDsn(role) }) });
  open.push(prisma);
  return prisma;
}

export const appClient = (role = 'app') => connect(loadAppClientModule(), role);
export const packClient = (role) => connect(loadPackClientModule(), role);

export async function disconnectAll() {
  await Promise.all(open.splice(0).map((c) => c.$disconnect()));
}

// A plain pg client, for the catalog and for rows only the owner may write.
export async function pgClient(connectionString) {
  const client = new pg.Client({ connectionString });
  await client.connect();
  return client;
}
