//! The direct decoder: one pass over each record's bytes straight into Arrow builders,
//! for records of the shape the config expects (the great majority of any real topic).
//!
//! It accepts a record only when it is sure the arrow-json decoder would accept it with
//! the same values: the whole record is valid UTF-8 and strict JSON, exactly one object,
//! no key of the schema twice, strings without escapes, every value of a column of a
//! type that column takes as is. Anything else (escapes, a string where a number is
//! expected, a number out of range, a syntax error, trailing bytes) is handed back, and
//! the arrow-json path decodes it or dead-letters it with its reasons. So the direct
//! decoder changes speed, never results; a test holds it to that on mutated records.
//!
//! Written by hand because no crate decodes JSON into Arrow builders for a fixed
//! nested schema in one pass (simd-json and sonic-rs build values or tapes first, as
//! arrow-json does).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, ListBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use super::MAX_DEPTH;

/// What the direct decoder knows of the schema: the tree of key paths and the type of
/// each column.
pub(super) struct Plan {
    branches: Vec<Branch>,
    kinds: Vec<Kind>,
    schema: SchemaRef,
}

#[derive(Clone, Copy)]
enum Kind {
    Timestamp,
    Utf8,
    Float64,
    ListFloat64,
}

/// One JSON object of the schema: its keys, in the order the config lists them (records
/// usually list them in one order, so the next key is tried first).
#[derive(Default)]
struct Branch {
    names: Vec<Box<[u8]>>,
    children: Vec<Child>,
    /// The map is built once from the config and only read: keys of the traffic can
    /// make a lookup probe longer, never grow it.
    by_name: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
}

/// Keys of a branch this small are looked for one by one (from the hint on, lengths
/// first) before the map is asked: cheaper than hashing when records list the keys in
/// another order than the config.
const SCAN_KEYS: usize = 16;

#[derive(Clone, Copy)]
enum Child {
    Column(usize),
    Branch(usize),
}

impl Plan {
    /// `paths[c]` is the key path of column `c` of `schema` (the relaxed, all-nullable
    /// events schema); None when a column has a type the direct decoder does not
    /// build.
    pub(super) fn new(paths: &[Vec<String>], schema: SchemaRef) -> Option<Self> {
        let kinds = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => {
                    Some(Kind::Timestamp)
                }
                DataType::Utf8 => Some(Kind::Utf8),
                DataType::Float64 => Some(Kind::Float64),
                DataType::List(item) if item.data_type() == &DataType::Float64 => {
                    Some(Kind::ListFloat64)
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let mut plan = Self {
            branches: vec![Branch::default()],
            kinds,
            schema,
        };
        for (column, path) in paths.iter().enumerate() {
            let mut branch = 0;
            for (depth, part) in path.iter().enumerate() {
                let last = depth + 1 == path.len();
                let found = plan.branches[branch].by_name.get(part.as_bytes()).copied();
                branch = match (found.map(|i| plan.branches[branch].children[i]), last) {
                    (Some(Child::Branch(b)), false) => b,
                    (None, true) => {
                        plan.branches[branch].add(part, Child::Column(column));
                        break;
                    }
                    (None, false) => {
                        let b = plan.branches.len();
                        plan.branches.push(Branch::default());
                        plan.branches[branch].add(part, Child::Branch(b));
                        b
                    }
                    // Clashing paths are refused when the config is checked.
                    _ => return None,
                };
            }
        }
        Some(plan)
    }

    fn columns(&self) -> usize {
        self.kinds.len()
    }
}

impl Branch {
    fn add(&mut self, name: &str, child: Child) {
        self.by_name
            .insert(name.as_bytes().into(), self.children.len());
        self.names.push(name.as_bytes().into());
        self.children.push(child);
    }
}

/// A column's value in the record being read, before it is known to be good.
#[derive(Clone, Copy)]
enum Slot {
    Null,
    Timestamp(i64),
    Float(f64),
    /// Text at these byte offsets of the record.
    Text(u32, u32),
    Literal(&'static str),
    /// Items `lists[from..to]`.
    List(u32, u32),
}

enum Builder {
    Timestamp(TimestampMillisecondBuilder),
    Utf8(StringBuilder),
    Float64(Float64Builder),
    ListFloat64(ListBuilder<Float64Builder>),
}

/// Decodes one raw batch's records directly, keeping those it accepts.
pub(super) struct DirectBatch<'p> {
    plan: &'p Plan,
    builders: Vec<Builder>,
    slots: Vec<Slot>,
    lists: Vec<Option<f64>>,
    /// For each branch, the child expected next.
    hints: Vec<usize>,
    /// For each column and branch, the record in which its key was last seen
    /// (catches a key given twice without clearing per record).
    seen_columns: Vec<u32>,
    seen_branches: Vec<u32>,
    record: u32,
    rows: usize,
}

impl<'p> DirectBatch<'p> {
    pub(super) fn new(plan: &'p Plan, capacity: usize) -> Self {
        let builders = plan
            .kinds
            .iter()
            .map(|k| match k {
                Kind::Timestamp => Builder::Timestamp(
                    TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"),
                ),
                Kind::Utf8 => Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
                Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
                Kind::ListFloat64 => Builder::ListFloat64(ListBuilder::with_capacity(
                    Float64Builder::with_capacity(capacity * 2),
                    capacity,
                )),
            })
            .collect();
        Self {
            plan,
            builders,
            slots: vec![Slot::Null; plan.columns()],
            lists: Vec::new(),
            hints: vec![0; plan.branches.len()],
            seen_columns: vec![u32::MAX; plan.columns()],
            seen_branches: vec![u32::MAX; plan.branches.len()],
            record: 0,
            rows: 0,
        }
    }

    /// Reads one record; true when it became a row, false when it must take the
    /// arrow-json path (nothing of it is kept then).
    pub(super) fn push(&mut self, record: &[u8]) -> bool {
        self.record = self.record.wrapping_add(1);
        if self.record == u32::MAX {
            self.seen_columns.fill(u32::MAX);
            self.seen_branches.fill(u32::MAX);
            self.record = 0;
        }
        let Ok(text) = std::str::from_utf8(record) else {
            return false;
        };
        // Offsets are stored in u32.
        if text.len() >= u32::MAX as usize {
            return false;
        }
        self.slots.fill(Slot::Null);
        self.lists.clear();
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        p.ws();
        if self.object(&mut p, 0, 1).is_none() {
            return false;
        }
        p.ws();
        if p.i != p.b.len() {
            return false;
        }
        self.commit(text);
        true
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// The accepted rows as a batch of the relaxed events schema.
    pub(super) fn finish(mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Timestamp(b) => Arc::new(b.finish()),
                    Builder::Utf8(b) => Arc::new(b.finish()),
                    Builder::Float64(b) => Arc::new(b.finish()),
                    Builder::ListFloat64(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        Some(
            RecordBatch::try_new(self.plan.schema.clone(), columns)
                .expect("builders are made from the schema's types"),
        )
    }

    /// Reads an object of `branch` at `p` (which must be at its `{`).
    fn object(&mut self, p: &mut Parser, branch: usize, depth: usize) -> Option<()> {
        p.expect(b'{')?;
        p.items(b'}', |p| self.member(p, branch, depth))
    }

    /// One `"key": value` of an object of `branch`.
    fn member(&mut self, p: &mut Parser, branch: usize, depth: usize) -> Option<()> {
        let (from, to) = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match self.child(branch, &p.b[from..to]) {
            None => p.skip(depth),
            Some(Child::Column(c)) => {
                if std::mem::replace(&mut self.seen_columns[c], self.record) == self.record {
                    return None;
                }
                self.slots[c] = self.value(p, self.plan.kinds[c], depth)?;
                Some(())
            }
            Some(Child::Branch(b)) => {
                if std::mem::replace(&mut self.seen_branches[b], self.record) == self.record {
                    return None;
                }
                if p.literal(b"null") {
                    return Some(());
                }
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.object(p, b, depth + 1)
            }
        }
    }

    fn child(&mut self, branch: usize, key: &[u8]) -> Option<Child> {
        let b = &self.plan.branches[branch];
        let hint = self.hints[branch];
        let n = b.names.len();
        let i = if b
            .names
            .get(hint)
            .is_some_and(|name| super::same_bytes(name, key))
        {
            hint
        } else if n <= SCAN_KEYS {
            (0..n)
                .map(|k| (hint + k) % n)
                .find(|&i| super::same_bytes(&b.names[i], key))?
        } else {
            *b.by_name.get(key)?
        };
        self.hints[branch] = i + 1;
        Some(b.children[i])
    }

    /// The value of a column read at `depth` (a list opens one more level).
    fn value(&mut self, p: &mut Parser, kind: Kind, depth: usize) -> Option<Slot> {
        if p.literal(b"null") {
            return Some(Slot::Null);
        }
        match kind {
            Kind::Float64 => p.float().map(Slot::Float),
            Kind::Utf8 => match p.peek()? {
                b'"' => p.string().map(|(f, t)| Slot::Text(f as u32, t as u32)),
                b't' if p.literal(b"true") => Some(Slot::Literal("true")),
                b'f' if p.literal(b"false") => Some(Slot::Literal("false")),
                _ => p.number().map(|n| Slot::Text(n.from as u32, n.to as u32)),
            },
            Kind::Timestamp => {
                if p.peek()? == b'"' {
                    let (f, t) = p.string()?;
                    if let Some(ms) = utc_millis(&p.b[f..t]) {
                        return Some(Slot::Timestamp(ms));
                    }
                    let s = std::str::from_utf8(&p.b[f..t]).ok()?;
                    let date = string_to_datetime(&Utc, s).ok()?;
                    Some(Slot::Timestamp(date.timestamp_millis()))
                } else {
                    let n = p.number()?;
                    if !n.integer {
                        return None;
                    }
                    let s = std::str::from_utf8(&p.b[n.from..n.to]).ok()?;
                    s.parse::<i64>().ok().map(Slot::Timestamp)
                }
            }
            Kind::ListFloat64 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let from = self.lists.len() as u32;
                let lists = &mut self.lists;
                p.expect(b'[')?;
                p.items(b']', |p| {
                    let item = if p.literal(b"null") {
                        None
                    } else {
                        Some(p.float()?)
                    };
                    lists.push(item);
                    Some(())
                })?;
                Some(Slot::List(from, self.lists.len() as u32))
            }
        }
    }

    fn commit(&mut self, text: &str) {
        for (builder, slot) in self.builders.iter_mut().zip(&self.slots) {
            match (builder, *slot) {
                (Builder::Timestamp(b), Slot::Timestamp(v)) => b.append_value(v),
                (Builder::Float64(b), Slot::Float(v)) => b.append_value(v),
                (Builder::Utf8(b), Slot::Text(f, t)) => {
                    b.append_value(&text[f as usize..t as usize])
                }
                (Builder::Utf8(b), Slot::Literal(s)) => b.append_value(s),
                (Builder::ListFloat64(b), Slot::List(f, t)) => {
                    b.values()
                        .extend(self.lists[f as usize..t as usize].iter().copied());
                    b.append(true);
                }
                (Builder::Timestamp(b), _) => b.append_null(),
                (Builder::Float64(b), _) => b.append_null(),
                (Builder::Utf8(b), _) => b.append_null(),
                (Builder::ListFloat64(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }
}

/// Milliseconds since the epoch of a time written `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the
/// form nearly every producer logs, as arrow's parser reads it (the fraction truncated to
/// milliseconds); None for anything else (other forms, offsets, a field out of range),
/// which arrow's parser then reads. Arrow's general parser costs several times more.
fn utc_millis(s: &[u8]) -> Option<i64> {
    if s.len() < 20
        || s.len() > 30
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
        || s[s.len() - 1] != b'Z'
    {
        return None;
    }
    let digits = |r: &[u8]| -> Option<i64> {
        r.iter().try_fold(0i64, |v, &c| {
            let d = c.wrapping_sub(b'0');
            (d <= 9).then(|| v * 10 + i64::from(d))
        })
    };
    let (year, month, day) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let (hour, minute, second) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    let millis = match &s[19..s.len() - 1] {
        [] => 0,
        // One to nine digits: their value scaled to milliseconds, the rest truncated.
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 1000 / 10i64.pow(fraction.len() as u32)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's
    // days_from_civil: years counted from March, in 400-year eras).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis)
}

/// A number as [`Parser::number`] read it.
struct Number {
    from: usize,
    to: usize,
    integer: bool,
    negative: bool,
    /// The decimal digits, when they fit in 64 bits; the value is this times
    /// 10^`exponent`.
    mantissa: Option<u64>,
    exponent: i64,
}

/// Bytes of a string looked at one by one before the rest is searched with memchr.
const SHORT_STRING: usize = 24;

/// Bytes that end the plain part of a string: the quote, a backslash, control characters.
const STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        stop[c] = true;
        c += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// A cursor over one record's bytes; every method returns None (or false) on anything
/// but the strict JSON it expects, leaving the record to the arrow-json path.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        // Compact records have none: one comparison says so (whitespace is ≤ b' ').
        while let Some(&c) = self.b.get(self.i)
            && c <= b' '
            && matches!(c, b' ' | b'\t' | b'\n' | b'\r')
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        // Asked before most values (`null`?): the first byte answers almost always.
        if self.peek() != word.first().copied() {
            return false;
        }
        let hit = self.b[self.i..].starts_with(word)
            && !self
                .b
                .get(self.i + word.len())
                .is_some_and(u8::is_ascii_alphanumeric);
        if hit {
            self.i += word.len();
        }
        hit
    }

    /// A string without escapes or control characters: the byte range of its content.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        let from = self.i;
        // Most strings (keys, ids) are short: their first bytes are looked at one by
        // one, and only a longer string is searched with memchr.
        let stop = |c: u8| STRING_STOP[c as usize];
        let head = &self.b[from..(from + SHORT_STRING).min(self.b.len())];
        let to = match head.iter().position(|&c| stop(c)) {
            Some(n) => from + n,
            None => {
                let rest = from + head.len();
                let len = memchr::memchr2(b'"', b'\\', &self.b[rest..])?;
                if self.b[rest..rest + len].iter().any(|&c| c < 0x20) {
                    return None;
                }
                rest + len
            }
        };
        if self.b[to] != b'"' {
            return None;
        }
        self.i = to + 1;
        Some((from, to))
    }

    /// A number in JSON's grammar: its byte range, whether it is an integer, and its
    /// decimal digits as an integer with a power of ten (`exact` when they fit in 64
    /// bits).
    fn number(&mut self) -> Option<Number> {
        let b = self.b;
        let from = self.i;
        let mut i = from;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let (mut mantissa, mut exact) = (0u64, true);
        // The digits from `i` on, into the mantissa; their count. Nineteen decimal digits
        // always fit in 64 bits: only past them is each step checked.
        let mut digits = |i: &mut usize| -> usize {
            let start = *i;
            while let Some(&c) = b.get(*i) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(d);
                } else {
                    match mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(u64::from(d)))
                    {
                        Some(m) => mantissa = m,
                        None => exact = false,
                    }
                }
                *i += 1;
            }
            *i - start
        };
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        let (mut exponent, mut integer) = (0i64, true);
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = digits(&mut i);
            if n == 0 {
                return None;
            }
            exponent -= n as i64;
            integer = false;
        }
        self.i = i;
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.i += 1;
            let sign = match self.peek() {
                Some(b'-') => -1,
                Some(b'+') => 1,
                _ => 0,
            };
            self.i += usize::from(sign != 0);
            let start = self.i;
            let mut e: i64 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                e = (e * 10 + i64::from(c - b'0')).min(1 << 20);
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
            exponent += if sign < 0 { -e } else { e };
        }
        Some(Number {
            from,
            to: self.i,
            integer,
            negative,
            mantissa: exact.then_some(mantissa),
            exponent,
        })
    }

    /// A finite number, correctly rounded (as arrow-json's parser rounds). Most logged
    /// numbers have few digits and a small exponent: those are one exact integer times
    /// or over an exact power of ten, a single rounding (Clinger's fast path); the
    /// others go to std's parser.
    fn float(&mut self) -> Option<f64> {
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let n = self.number()?;
        if let Some(m) = n.mantissa.filter(|&m| m <= 1 << 53)
            && (-22..=22).contains(&n.exponent)
        {
            let (m, power) = (m as f64, POW10[n.exponent.unsigned_abs() as usize]);
            let v = if n.exponent < 0 { m / power } else { m * power };
            return Some(if n.negative { -v } else { v });
        }
        let s = std::str::from_utf8(&self.b[n.from..n.to]).ok()?;
        s.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// Steps over any JSON value, checking its syntax.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.items(b'}', |p| {
                    p.string()?;
                    p.ws();
                    p.expect(b':')?;
                    p.ws();
                    p.skip(depth + 1)
                })
            }
            b'[' => {
                self.i += 1;
                self.items(b']', |p| p.skip(depth + 1))
            }
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            _ => self.number().map(|_| ()),
        }
    }

    /// The items of an array or object whose opener was just read, through `close`:
    /// `item` reads one, then a comma or the closer follows.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.ws();
        if self.eat(close) {
            return Some(());
        }
        loop {
            item(self)?;
            self.ws();
            if self.eat(close) {
                return Some(());
            }
            self.expect(b',')?;
            self.ws();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Parser;
    use rand::{Rng, SeedableRng};

    /// Numbers as logs write them and as an attacker might: every one the fast path
    /// takes, and many it must leave to std, give std's value bit for bit.
    #[test]
    fn numbers_are_read_as_std_reads_them() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "13.0",
            "0.000118",
            "1e-06",
            "9007199254740992",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "1e22",
            "1e23",
            "1.5e-22",
            "123456789012345678901234567890",
            "4.9e-324",
            "1e-400",
            "0.1",
            "0.30000000000000004",
            "2.2250738585072014e-308",
            "1E+2",
            "7e0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..200_000 {
            let int: String = (0..rng.random_range(1..20))
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect();
            let int = int.trim_start_matches('0');
            let mut s = String::new();
            if rng.random_bool(0.3) {
                s.push('-');
            }
            s.push_str(if int.is_empty() { "0" } else { int });
            if rng.random_bool(0.7) {
                s.push('.');
                s.extend(
                    (0..rng.random_range(1..18))
                        .map(|_| char::from(b'0' + rng.random_range(0..10u8))),
                );
            }
            if rng.random_bool(0.3) {
                s.push_str(&format!("e{}", rng.random_range(-40..40)));
            }
            cases.push(s);
        }
        for s in &cases {
            let mut p = Parser {
                b: s.as_bytes(),
                i: 0,
            };
            let want = s.parse::<f64>().unwrap();
            let got = p.float();
            if want.is_finite() {
                assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{s}");
                assert_eq!(p.i, s.len(), "{s}");
            } else {
                assert_eq!(got, None, "{s}");
            }
        }
    }

    /// Times in the usual form, over every year arrow reads, with fractions of every
    /// length, impossible dates and random damage: whenever the fast path reads one, it
    /// reads arrow's value; the usual forms it must read.
    #[test]
    fn times_are_read_as_arrow_reads_them() {
        use chrono::Utc;
        use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
        let arrow = |s: &str| {
            string_to_datetime(&Utc, s)
                .ok()
                .map(|d| d.timestamp_millis())
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut cases: Vec<String> = [
            "2026-11-21T10:00:00.000Z",
            "2026-11-21T10:00:00Z",
            "1970-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "1969-12-31T23:59:59.9999999Z",
            "2000-02-29T12:00:00.5Z",
            "1900-02-29T12:00:00Z",
            "2024-02-29T23:59:59.123456789Z",
            "2023-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00.001Z",
            "9999-12-31T23:59:59.999Z",
            "2026-11-21T10:00:00.Z",
            "2026-11-21T10:00:00.1234567890Z",
            "2026-11-21 10:00:00Z",
            "2026-11-21t10:00:00Z",
            "2026-11-21T10:00:00+00:00",
            "2026-11-21T10:00:00.000z",
            "+2026-11-21T10:00:00Z",
        ]
        .map(String::from)
        .to_vec();
        for _ in 0..20_000 {
            let frac = match rng.random_range(0..11) {
                0 => String::new(),
                n => format!(
                    ".{:0n$}",
                    rng.random_range(0..10u64.pow(n.min(9) as u32)),
                    n = n.min(9)
                ),
            };
            let t = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
                rng.random_range(0..10_000),
                rng.random_range(0..14),
                rng.random_range(0..33),
                rng.random_range(0..25),
                rng.random_range(0..61),
                rng.random_range(0..61),
            );
            cases.push(t.clone());
            let mut b = t.into_bytes();
            let i = rng.random_range(0..b.len());
            b[i] = b"0123456789-:.TZ+ x"[rng.random_range(0..18)];
            cases.push(String::from_utf8(b).unwrap());
        }
        let mut read = 0;
        for c in &cases {
            if let Some(ms) = super::utc_millis(c.as_bytes()) {
                read += 1;
                assert_eq!(Some(ms), arrow(c), "{c}");
            }
        }
        for usual in cases[..6].iter().chain(&cases[7..8]) {
            assert!(super::utc_millis(usual.as_bytes()).is_some(), "{usual}");
        }
        // Most random dates are valid (day and month drawn past their range at times).
        assert!(read > cases.len() / 4, "{read} of {}", cases.len());
    }

    /// A string is read up to its closing quote, and refused at a backslash (an
    /// escape) or a control character before it, whether those come among the first
    /// bytes or after them: the plain definition, byte by byte, on random strings of
    /// every length around the short-string bound.
    #[test]
    fn strings_end_at_their_quote_and_refuse_escapes_and_control_characters() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        const BYTES: &[u8] = b"aZ09 -_.:\"\\\x01\x1f\x7f\xc3";
        for _ in 0..20_000 {
            let len = rng.random_range(0..3 * super::SHORT_STRING);
            let mut b = vec![b'"'];
            b.extend((0..len).map(|_| {
                if rng.random_bool(0.9) {
                    b'a'
                } else {
                    BYTES[rng.random_range(0..BYTES.len())]
                }
            }));
            let want = b[1..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .filter(|&n| b[1 + n] == b'"')
                .map(|n| (1, 1 + n));
            let mut p = Parser { b: &b, i: 0 };
            assert_eq!(p.string(), want, "{:?}", String::from_utf8_lossy(&b));
            if let Some((_, to)) = want {
                assert_eq!(p.i, to + 1);
            }
        }
    }
}
