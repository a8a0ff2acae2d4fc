// Values with exactly the Python core's semantics (queryplanner/predicate.py, wire.py):
// strings compare by code point, timestamps are naive UTC instants, NULL sorts last, and
// row sizes follow queryplanner.wire.row_bytes.

export const ROW_OVERHEAD_BYTES = 64;
export const VALUE_OVERHEAD_BYTES = 8;

/** Compare two strings by Unicode code point (JS `<` compares UTF-16 code units). */
export function compareStrings(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca !== cb) {
      // Surrogates (astral code points) must sort above U+E000..U+FFFF.
      if (ca >= 0xd800 && cb >= 0xd800) {
        ca = ca <= 0xdfff ? ca + 0x2000 : ca - 0x800;
        cb = cb <= 0xdfff ? cb + 0x2000 : cb - 0x800;
      }
      return ca < cb ? -1 : 1;
    }
  }
  return a.length - b.length < 0 ? -1 : a.length === b.length ? 0 : 1;
}

/** Compare two non-null values of one column type. */
export function compareValues(a, b) {
  if (typeof a === "string" && typeof b === "string") return compareStrings(a, b);
  return a < b ? -1 : a > b ? 1 : 0;
}

const PLAIN_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/;
const PLAIN_MICROS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;
const TS = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * An ISO 8601 string -> the fixed-width naive UTC form "YYYY-MM-DDTHH:MM:SS.ffffff"
 * (so that string order is time order). Throws on anything else.
 */
export function timestampKey(value) {
  if (typeof value !== "string") throw new TypeError(`Not an ISO 8601 timestamp: ${JSON.stringify(value)}`);
  // Fast paths for what the server sends (seconds, or microseconds): a poke holds thousands.
  if (value.length === 19 && PLAIN_SECONDS.test(value)) return `${value}.000000`;
  if (value.length === 26 && PLAIN_MICROS.test(value)) return value;
  const m = TS.exec(value);
  if (!m) throw new TypeError(`Not an ISO 8601 timestamp: ${JSON.stringify(value)}`);
  const [, y, mo, d, h = "00", mi = "00", s = "00", frac = "", tz] = m;
  const micros = frac.padEnd(6, "0");
  if (!tz || tz === "Z" || /^[+-]00:?00$/.test(tz)) {
    return `${y}-${mo}-${d}T${h}:${mi}:${s}.${micros}`;
  }
  const sign = tz[0] === "-" ? -1 : 1;
  const digits = tz.slice(1).replace(":", "");
  const offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || 0));
  const ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) - offsetMin * 60000;
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  return `${iso.slice(0, 19)}.${micros}`;
}

/** The fixed-width form -> Python's datetime.isoformat() (microseconds only when non-zero). */
export function isoformat(key) {
  return key.endsWith(".000000") ? key.slice(0, 19) : key;
}

/** Python/orjson's float text: 1.0 not 1, 1e+16 not 10000000000000000. */
export function formatFloat(v) {
  if (Object.is(v, -0)) return "-0.0";
  const abs = Math.abs(v);
  if (abs !== 0 && (abs >= 1e16 || abs < 1e-5)) {
    return v.toExponential().replace(/e\+?(-?)(\d+)$/, (_, sign, exp) => `e${sign || "+"}${exp}`);
  }
  const text = String(v);
  return Number.isInteger(v) ? `${text}.0` : text;
}

const utf8 = new TextEncoder();

/** UTF-8 length of a string without encoding it (a lone surrogate counts 3, as U+FFFD). */
export function utf8Length(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

/** Encoded size of one value, as queryplanner.wire.value_bytes. */
export function valueBytes(type, value) {
  if (value === null || value === undefined || typeof value === "boolean") return 4;
  if (typeof value === "number") return 8;
  if (type === "timestamp") return 8;
  if (typeof value === "string" && type !== "json") return utf8Length(value);
  return utf8.encode(JSON.stringify(value)).length;
}

/** The byte estimate of one stored row, as queryplanner.wire.row_bytes. */
export function rowBytes(table, row) {
  let total = ROW_OVERHEAD_BYTES;
  for (const name of table.columnNames) {
    if (name in row) total += VALUE_OVERHEAD_BYTES + valueBytes(table.columns[name].type, row[name]);
  }
  return total;
}
