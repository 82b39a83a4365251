// prisma/schema.prisma against the live catalog of a migrated database.
//
// readCatalog() reads schema `public` from pg_catalog; schemaModel() parses a
// schema text into Prisma's DMMF with the Prisma 7.3 schema engine (WebAssembly,
// offline); compareSchemaToCatalog() lists every difference, as sentences.
//
// What is compared: tables <-> models, columns <-> scalar fields (type with
// its native type, nullability, list-ness), defaults, enums and their labels
// in order, primary keys, unique and plain indexes (with their names),
// foreign keys <-> relations (columns, target, ON DELETE / ON UPDATE).
// What Prisma cannot express must be named in a comment of the schema: every
// CHECK constraint, every trigger, and every partial index (as a
// `// partialIndexes:` line with the same columns and predicate).
// Bookkeeping tables of the harness, yoyo and Prisma Migrate are not models.
import { createRequire } from 'node:module';
import path from 'node:path';
import { APP_DIR } from './paths.mjs';

const require = createRequire(path.join(APP_DIR, 'package.json'));

export const BOOKKEEPING_TABLES = [/^_harness_/, /^_yoyo_/, /^yoyo_lock$/, /^_prisma_migrations$/];
const isBookkeeping = (name) => BOOKKEEPING_TABLES.some((re) => re.test(name));

const ACTIONS = { a: 'NoAction', r: 'Restrict', c: 'Cascade', n: 'SetNull', d: 'SetDefault' };

export async function readCatalog(client, schema = 'public') {
  const q = async (text) => (await client.query(text, [schema])).rows;
  const tables = {};
  for (const r of await q(`
      SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1`)) {
    if (isBookkeeping(r.name)) continue;
    tables[r.name] = {
      columns: {}, primaryKey: null, indexes: [], foreignKeys: [], checks: [], triggers: [],
    };
  }
  const inScope = (t) => Object.prototype.hasOwnProperty.call(tables, t);

  for (const r of await q(`
      SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
             a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default,
             a.attgenerated <> '' AS generated, a.attidentity <> '' AS identity
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum`)) {
    if (!inScope(r.table)) continue;
    tables[r.table].columns[r.name] = {
      type: r.type, notNull: r.not_null, default: r.default, generated: r.generated, identity: r.identity,
    };
  }

  for (const r of await q(`
      SELECT c.relname AS table, i.relname AS name, x.indisunique AS unique, x.indisprimary AS primary,
             am.amname AS method, pg_get_expr(x.indpred, x.indrelid) AS predicate,
             ARRAY(SELECT CASE WHEN k.attnum = 0 THEN NULL ELSE a.attname::text END
                   FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                   ORDER BY k.ord) AS columns,
             ARRAY(SELECT (o.opt & 1) = 1 FROM unnest(x.indoption::int2[]) AS o(opt)) AS descending
      FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = i.relam
      WHERE n.nspname = $1 ORDER BY 1, 2`)) {
    if (!inScope(r.table)) continue;
    const index = {
      name: r.name, unique: r.unique, method: r.method, predicate: r.predicate,
      columns: r.columns, descending: r.descending.some(Boolean),
    };
    if (r.primary) tables[r.table].primaryKey = index;
    else tables[r.table].indexes.push(index);
  }

  for (const r of await q(`
      SELECT c.relname AS table, k.conname AS name, k.contype AS type, f.relname AS ref_table,
             fn.nspname AS ref_schema, k.confdeltype AS on_delete, k.confupdtype AS on_update,
             ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum ORDER BY u.ord) AS columns,
             ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS u(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.attnum ORDER BY u.ord) AS ref_columns
      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_class f ON f.oid = k.confrelid LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace
      WHERE n.nspname = $1 AND k.contype IN ('f', 'c') ORDER BY 1, 2`)) {
    if (!inScope(r.table)) continue;
    if (r.type === 'c') {
      tables[r.table].checks.push(r.name);
    } else {
      tables[r.table].foreignKeys.push({
        name: r.name, columns: r.columns, refTable: r.ref_table, refSchema: r.ref_schema,
        refColumns: r.ref_columns, onDelete: ACTIONS[r.on_delete], onUpdate: ACTIONS[r.on_update],
      });
    }
  }

  for (const r of await q(`
      SELECT c.relname AS table, t.tgname AS name, (t.tgtype & 2) <> 0 AS before,
             (t.tgtype & 4) <> 0 AS on_insert
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1, 2`)) {
    if (!inScope(r.table)) continue;
    tables[r.table].triggers.push({ name: r.name, beforeInsert: r.before && r.on_insert });
  }

  const enums = {};
  for (const r of await q(`
      SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
      WHERE n.nspname = $1 GROUP BY t.typname ORDER BY 1`)) {
    enums[r.name] = r.labels;
  }
  return { schema, tables, enums };
}

// The DMMF of a schema text, from the same schema engine Prisma 7.3 runs.
export function schemaModel(schemaText) {
  const wasm = require('@prisma/prisma-schema-wasm');
  return JSON.parse(wasm.get_dmmf(JSON.stringify({ prismaSchema: [['schema.prisma', schemaText]] })));
}

const quoteIdent = (name) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name}"`);

// PostgreSQL type (as format_type() writes it) of a scalar or enum field.
export function expectedColumnType(field, enumDbName) {
  let base;
  const [native, args = []] = field.nativeType ?? [];
  if (field.kind === 'enum') {
    base = quoteIdent(enumDbName(field.type));
  } else {
    const byNative = {
      Uuid: 'uuid', Text: 'text', Citext: 'citext', Inet: 'inet', Xml: 'xml', Json: 'json', JsonB: 'jsonb',
      Integer: 'integer', SmallInt: 'smallint', BigInt: 'bigint', Boolean: 'boolean', ByteA: 'bytea',
      Date: 'date', DoublePrecision: 'double precision', Real: 'real', Money: 'money', Oid: 'oid',
      VarChar: args.length ? `character varying(${args[0]})` : 'character varying',
      Char: args.length ? `character(${args[0]})` : 'character',
      Timestamp: `timestamp(${args[0] ?? 3}) without time zone`,
      Timestamptz: `timestamp(${args[0] ?? 3}) with time zone`,
      Time: `time(${args[0] ?? 3}) without time zone`,
      Timetz: `time(${args[0] ?? 3}) with time zone`,
      Decimal: args.length ? `numeric(${args.join(',')})` : 'numeric',
    };
    const byScalar = {
      String: 'text', Boolean: 'boolean', Int: 'integer', BigInt: 'bigint', Float: 'double precision',
      Decimal: 'numeric(65,30)', DateTime: 'timestamp(3) without time zone', Json: 'jsonb', Bytes: 'bytea',
    };
    base = native ? byNative[native] : byScalar[field.type];
    if (!base) return `<no PostgreSQL type known for ${field.type}${native ? ` @db.${native}` : ''}>`;
  }
  return field.isList ? `${base}[]` : base;
}

// A default's literal as PostgreSQL stores it, without its cast: 'github'::text -> github
function stripCast(expr) {
  const m = expr.match(/^'((?:[^']|'')*)'::[\w". ]+(\[\])?$/);
  if (m) return m[1].replace(/''/g, "'");
  return expr;
}

function compareDefault(where, field, column, table, diffs) {
  const dbDefault = column.default;
  const d = field.default;
  if (field.isUpdatedAt && d === undefined) {
    if (dbDefault !== null && dbDefault !== 'CURRENT_TIMESTAMP') {
      diffs.push(`${where}: @updatedAt field, but the column default is ${dbDefault}`);
    }
    return;
  }
  if (d === undefined) {
    if (dbDefault !== null) diffs.push(`${where}: the column has DEFAULT ${dbDefault}, the field has no @default`);
    return;
  }
  if (typeof d === 'object' && d !== null && !Array.isArray(d)) {
    if (d.name === 'dbgenerated' && d.args.length === 0) {
      // A value the database fills by a BEFORE INSERT trigger: no column
      // default, and the field's /// comment names that trigger.
      const named = table.triggers.filter((t) => t.beforeInsert && (field.documentation ?? '').includes(t.name));
      if (dbDefault !== null) diffs.push(`${where}: @default(dbgenerated()) but the column has DEFAULT ${dbDefault}`);
      if (named.length === 0) {
        diffs.push(`${where}: @default(dbgenerated()) needs a /// comment naming the BEFORE INSERT trigger that fills it`);
      }
      return;
    }
    if (d.name === 'dbgenerated') {
      if (dbDefault !== d.args[0]) {
        diffs.push(`${where}: @default(dbgenerated("${d.args[0]}")) but the column default is ${dbDefault ?? 'none'}`);
      }
      return;
    }
    if (d.name === 'now') {
      if (dbDefault !== 'CURRENT_TIMESTAMP') {
        diffs.push(`${where}: @default(now()) but the column default is ${dbDefault ?? 'none'}`);
      }
      return;
    }
    if (['uuid', 'cuid', 'nanoid', 'ulid'].includes(d.name)) {
      // generated by the client; the database must not have a default of its own
      if (dbDefault !== null) diffs.push(`${where}: @default(${d.name}()) is generated by Prisma, but the column has DEFAULT ${dbDefault}`);
      return;
    }
    if (d.name === 'autoincrement') {
      if (!(dbDefault ?? '').startsWith('nextval(') && !column.identity) {
        diffs.push(`${where}: @default(autoincrement()) but the column default is ${dbDefault ?? 'none'}`);
      }
      return;
    }
    diffs.push(`${where}: default ${d.name}() is not understood by this check`);
    return;
  }
  const literal = Array.isArray(d) ? `{${d.join(',')}}` : String(d);
  if (dbDefault === null || stripCast(dbDefault) !== literal) {
    diffs.push(`${where}: @default(${JSON.stringify(d)}) but the column default is ${dbDefault ?? 'none'}`);
  }
}

// A predicate without the parentheses pg_get_expr() puts around the whole of it.
function bare(predicate) {
  let s = predicate.trim();
  for (;;) {
    if (!(s.startsWith('(') && s.endsWith(')'))) return s;
    let depth = 0;
    let wraps = true;
    for (let i = 0; i < s.length - 1; i += 1) {
      if (s[i] === '(') depth += 1;
      if (s[i] === ')') depth -= 1;
      if (depth === 0) { wraps = false; break; }
    }
    if (!wraps) return s;
    s = s.slice(1, -1).trim();
  }
}

// `// partialIndexes: @@unique([a, b], map: "name", where: raw("..."))` lines.
export function partialIndexComments(schemaText) {
  const found = [];
  for (const [, attr] of schemaText.matchAll(/^\/\/ partialIndexes: (.*)$/gm)) {
    const m = attr.match(/^@@(unique|index)\(\[([^\]]*)\],\s*map:\s*"([^"]+)",\s*where:\s*raw\("((?:[^"\\]|\\.)*)"\)\)$/);
    if (!m) {
      found.push({ invalid: attr });
      continue;
    }
    found.push({
      unique: m[1] === 'unique', fields: m[2].split(',').map((s) => s.trim()).filter(Boolean),
      name: m[3], predicate: m[4].replace(/\\(.)/g, '$1'),
    });
  }
  return found;
}

// Every difference between the schema and the catalog, as sentences; [] when they agree.
export function compareSchemaToCatalog(dmmf, catalog, schemaText) {
  const diffs = [];
  const { models, enums } = dmmf.datamodel;
  const enumDb = new Map(enums.map((e) => [e.name, e.dbName ?? e.name]));
  const enumDbName = (name) => enumDb.get(name) ?? name;
  const modelByName = new Map(models.map((m) => [m.name, m]));
  const tableOf = (m) => m.dbName ?? m.name;
  const colOf = (m, fieldName) => {
    const f = m.fields.find((x) => x.name === fieldName);
    return f ? (f.dbName ?? f.name) : fieldName;
  };
  const comments = schemaText.split('\n').filter((l) => /^\s*\/\//.test(l)).join('\n');
  const mentioned = (name) => new RegExp(`(^|[^A-Za-z0-9_])${name}([^A-Za-z0-9_]|$)`).test(comments);

  // enums
  for (const [name, labels] of Object.entries(catalog.enums)) {
    const e = enums.find((x) => (x.dbName ?? x.name) === name);
    if (!e) {
      diffs.push(`enum "${name}" exists in the database but not in the schema`);
      continue;
    }
    const values = e.values.map((v) => v.dbName ?? v.name);
    if (values.join(',') !== labels.join(',')) {
      diffs.push(`enum "${name}": database labels [${labels.join(', ')}], schema values [${values.join(', ')}]`);
    }
  }
  for (const e of enums) {
    if (!(enumDbName(e.name) in catalog.enums)) diffs.push(`enum ${e.name} is in the schema but not in the database`);
  }

  // tables and models
  const modelByTable = new Map(models.map((m) => [tableOf(m), m]));
  for (const t of Object.keys(catalog.tables)) {
    if (!modelByTable.has(t)) diffs.push(`table "${t}" exists in the database but has no model`);
  }
  for (const m of models) {
    if (!(tableOf(m) in catalog.tables)) diffs.push(`model ${m.name} has no table "${tableOf(m)}" in the database`);
  }

  for (const m of models) {
    const tname = tableOf(m);
    const table = catalog.tables[tname];
    if (!table) continue;
    const scalars = m.fields.filter((f) => f.kind === 'scalar' || f.kind === 'enum');

    // columns and fields
    const fieldByColumn = new Map(scalars.map((f) => [f.dbName ?? f.name, f]));
    for (const c of Object.keys(table.columns)) {
      if (!fieldByColumn.has(c)) diffs.push(`column "${tname}"."${c}" exists in the database but ${m.name} has no field for it`);
    }
    for (const f of scalars) {
      const cname = f.dbName ?? f.name;
      const where = `${m.name}.${f.name}`;
      const col = table.columns[cname];
      if (!col) {
        diffs.push(`${where}: no column "${tname}"."${cname}" in the database`);
        continue;
      }
      const want = expectedColumnType(f, enumDbName);
      if (want !== col.type) diffs.push(`${where}: the schema means ${want}, the column is ${col.type}`);
      // Prisma has no optional lists; a nullable array column is written `T[]`.
      if (!f.isList && f.isRequired !== col.notNull) {
        diffs.push(`${where}: ${f.isRequired ? 'required' : 'optional'} in the schema, but the column is ${col.notNull ? 'NOT NULL' : 'nullable'}`);
      }
      compareDefault(where, f, col, table, diffs);
    }

    // primary key
    const pkFields = m.primaryKey ? m.primaryKey.fields : scalars.filter((f) => f.isId).map((f) => f.name);
    const pkCols = pkFields.map((n) => colOf(m, n));
    const dbPk = table.primaryKey ? table.primaryKey.columns : [];
    if (pkCols.join(',') !== dbPk.join(',')) {
      diffs.push(`${m.name}: primary key (${pkCols.join(', ') || 'none'}) in the schema, (${dbPk.join(', ') || 'none'}) in the database`);
    }

    // unique and plain indexes (partial ones are compared with the comments below)
    const schemaIndexes = dmmf.datamodel.indexes
      .filter((i) => i.model === m.name && (i.type === 'unique' || i.type === 'normal'))
      .map((i) => {
        const cols = i.fields.map((x) => colOf(m, x.name));
        const suffix = i.type === 'unique' ? 'key' : 'idx';
        return { unique: i.type === 'unique', columns: cols, name: i.dbName ?? `${tname}_${cols.join('_')}_${suffix}` };
      });
    const dbIndexes = table.indexes.filter((i) => i.predicate === null);
    const key = (i) => `${i.unique ? 'UNIQUE ' : ''}(${i.columns.join(', ')})`;
    for (const i of dbIndexes) {
      const s = schemaIndexes.find((x) => key(x) === key(i));
      if (!s) {
        diffs.push(`index "${i.name}" ${key(i)} on "${tname}" is not in the schema`);
      } else if (s.name !== i.name) {
        diffs.push(`index ${key(i)} on "${tname}" is named "${i.name}" in the database, "${s.name}" by the schema`);
      }
      if (i.method !== 'btree' || i.descending || i.columns.includes(null)) {
        diffs.push(`index "${i.name}" on "${tname}" uses a method, order or expression this check does not compare`);
      }
    }
    for (const s of schemaIndexes) {
      if (!dbIndexes.some((i) => key(i) === key(s))) diffs.push(`${m.name}: ${key(s)} index "${s.name}" is not in the database`);
    }

    // foreign keys and relations
    const matched = new Set();
    for (const f of m.fields.filter((x) => x.kind === 'object' && (x.relationFromFields ?? []).length)) {
      const target = modelByName.get(f.type);
      const cols = f.relationFromFields.map((n) => colOf(m, n));
      const refCols = f.relationToFields.map((n) => colOf(target, n));
      const fk = table.foreignKeys.find((k) => k.refTable === tableOf(target)
        && k.columns.join(',') === cols.join(',') && k.refColumns.join(',') === refCols.join(','));
      const where = `${m.name}.${f.name}`;
      if (!fk) {
        if (!/no foreign key in the database/i.test(f.documentation ?? '')) {
          diffs.push(`${where}: relation (${cols.join(', ')}) -> "${tableOf(target)}" (${refCols.join(', ')}) has no foreign key in the database (say so in a /// comment if that is meant)`);
        }
        continue;
      }
      matched.add(fk.name);
      const optional = f.relationFromFields.some((n) => !m.fields.find((x) => x.name === n).isRequired);
      const onDelete = f.relationOnDelete ?? (optional ? 'SetNull' : 'Restrict');
      const onUpdate = f.relationOnUpdate ?? 'Cascade';
      if (onDelete !== fk.onDelete) diffs.push(`${where}: onDelete ${onDelete} in the schema, ON DELETE ${fk.onDelete} on "${fk.name}"`);
      if (onUpdate !== fk.onUpdate) diffs.push(`${where}: onUpdate ${onUpdate} in the schema, ON UPDATE ${fk.onUpdate} on "${fk.name}"`);
      const defaultName = `${tname}_${cols.join('_')}_fkey`;
      if (fk.name !== defaultName && !schemaText.includes(`map: "${fk.name}"`)) {
        diffs.push(`${where}: the foreign key is "${fk.name}" in the database, "${defaultName}" by the schema (map: missing)`);
      }
    }
    for (const fk of table.foreignKeys) {
      if (!matched.has(fk.name)) {
        diffs.push(`foreign key "${fk.name}" on "${tname}" (${fk.columns.join(', ')}) -> "${fk.refTable}" (${fk.refColumns.join(', ')}) has no relation in the schema`);
      }
    }

    // what Prisma 7.3 cannot express must at least be named in a comment
    for (const name of table.checks) {
      if (!mentioned(name)) diffs.push(`CHECK constraint "${name}" on "${tname}" is not named in a schema comment`);
    }
    for (const t of table.triggers) {
      if (!mentioned(t.name)) diffs.push(`trigger ${t.name} on "${tname}" is not named in a schema comment`);
    }
  }

  // partial indexes <-> `// partialIndexes:` comment lines
  const described = partialIndexComments(schemaText);
  for (const d of described.filter((x) => x.invalid)) diffs.push(`unreadable partialIndexes comment: ${d.invalid}`);
  for (const [tname, table] of Object.entries(catalog.tables)) {
    const m = modelByTable.get(tname);
    for (const i of table.indexes.filter((x) => x.predicate !== null)) {
      const d = described.find((x) => x.name === i.name);
      if (!d) {
        diffs.push(`partial index "${i.name}" on "${tname}" has no \`// partialIndexes:\` line in the schema`);
        continue;
      }
      const cols = m ? d.fields.map((n) => colOf(m, n)) : d.fields;
      if (d.unique !== i.unique || cols.join(',') !== i.columns.join(',') || bare(d.predicate) !== bare(i.predicate)) {
        diffs.push(`partial index "${i.name}": the database has ${i.unique ? 'UNIQUE ' : ''}(${i.columns.join(', ')}) WHERE ${i.predicate}; the comment says ${d.unique ? 'UNIQUE ' : ''}(${cols.join(', ')}) WHERE ${d.predicate}`);
      }
    }
  }
  for (const d of described.filter((x) => !x.invalid)) {
    const exists = Object.values(catalog.tables).some((t) => t.indexes.some((i) => i.name === d.name && i.predicate !== null));
    if (!exists) diffs.push(`the schema describes partial index "${d.name}", which is not in the database`);
  }
  return diffs;
}
