// Paths shared by the Node suite. The upstream application files are read at
// run time from the repository's parent directory (../shared/upstream), never
// copied into this repository.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const APP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(APP_DIR, '..', '..');
export const UPSTREAM_DIR = path.resolve(REPO_ROOT, '..', 'shared', 'upstream');
export const UPSTREAM_SCHEMA = path.join(UPSTREAM_DIR, 'prisma', 'schema.prisma');
export const UPSTREAM_APP_DIR = path.join(UPSTREAM_DIR, 'app');
export const PACK_SCHEMA = path.join(REPO_ROOT, 'prisma', 'schema.prisma');
export const GENERATED_DIR = path.join(APP_DIR, 'generated');

// The current app client: upstream schema.prisma (url line removed) placed so
// that its output "../../node_modules/@prisma/client" lands inside tests/app.
export const APP_SCHEMA_COPY = path.join(GENERATED_DIR, 'app', 'schema', 'prisma', 'schema.prisma');
export const APP_CLIENT_DIR = path.join(GENERATED_DIR, 'app', 'node_modules', '@prisma', 'client');

// The pack client: prisma/schema.prisma generated from a copy beside this
// package's node_modules (the Prisma CLI resolves @prisma/client from the
// schema's directory); only the generator output line differs.
export const PACK_SCHEMA_COPY = path.join(GENERATED_DIR, 'pack-schema', 'schema.prisma');
export const PACK_CLIENT_DIR = path.join(GENERATED_DIR, 'pack-client');
export const PACK_CLIENT_OUTPUT_IN_COPY = '../pack-client';
