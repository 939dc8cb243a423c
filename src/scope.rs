//! OAuth 2.0 `scope` strings: parsing, comparing, intersecting.
//!
//! A scope string is a list of *items* separated by spaces or commas. Runs of
//! separators and empty items (a leading or trailing comma, `a,,b`, `a , b`) are
//! tolerated and ignored. Commas inside `[...]` separate grants of an access
//! level and never split the top-level list.
//!
//! ```text
//! scope    = *sep [ item *( 1*sep item ) ] *sep
//! sep      = " " / ","
//! item     = level / right / name
//! level    = 1*tchar "[" *sep [ right *( 1*sep right ) ] *sep "]"
//! right    = resource "." rights           ; only if the last segment is a rights spec
//! rights   = letters / "read" / "write" / "delete"
//! letters  = 1*3( "r" / "w" / "d" )         ; any order, each letter at most once
//! resource = 1*tchar                        ; everything before the LAST "."
//! name     = 1*tchar                        ; any other token (opaque scope name)
//! tchar    = %x21 / %x23-2B / %x2D-5A / %x5E-7E
//! ```
//!
//! `tchar` is the RFC 6749 scope-token character set (`%x21 / %x23-5B / %x5D-7E`)
//! minus the structural characters `[`, `]` and `,`: no `"`, no `\`, no control
//! characters, no non-ASCII.
//!
//! * **Right** — `links.wd`, `usage.r`, `crm.objects.contacts.read`, `orders.write`:
//!   rights on a resource, written either as letters or as exactly one word.
//!   The resource is everything before the last dot and must not be empty
//!   (`.r` is an error).
//! * **Level** — `location[orders.write,customer_list.write]`, `account[]`:
//!   grants bound to an access level. Every grant must be a Right item. Levels
//!   cannot be nested and a scope holds at most one level (`HubRise` rule:
//!   "0 or 1 access-level set").
//! * **Name** — everything else: `profile`, `profile_with_email`, `oauth`, and also
//!   dotted names whose last segment is not a rights spec, such as
//!   `files.ui_manage`.
//!
//! A last segment that *looks* like letters but is not a valid rights spec — a
//! repeated letter (`links.rr`), an unknown letter (`links.rx`), upper case
//! (`links.R`, `links.READ`) — is **not** an error: the whole token is then an
//! opaque [`ScopeItem::Name`], exactly like `files.ui_manage`. Such a name is only
//! ever granted by the identical name, so it can never widen access.
//!
//! Limits: the whole string is at most [`MAX_LEN`] bytes and holds at most
//! [`MAX_ITEMS`] items, where every grant inside a level counts as an item too
//! (duplicates count before they are merged).
//!
//! Parsed scopes are deduplicated: Right items on the same resource are merged
//! (union of rights, keeping the first item's spelling), a Name appears once.
//! [`Scope`]'s `Display` writes a canonical text that parses back to an equal scope.

use std::fmt;
use std::str::FromStr;

/// Maximum length of a scope string, in bytes.
pub const MAX_LEN: usize = 2048;

/// Maximum number of items in a scope string; grants inside a level count too.
pub const MAX_ITEMS: usize = 64;

/// One right on a resource.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Right {
    /// `r` / `read`.
    Read,
    /// `w` / `write`.
    Write,
    /// `d` / `delete`.
    Delete,
}

impl Right {
    /// All rights, in canonical (`r`, `w`, `d`) order.
    pub const ALL: [Right; 3] = [Right::Read, Right::Write, Right::Delete];

    /// The right an HTTP method needs.
    ///
    /// GET/HEAD/OPTIONS → Read, POST/PUT/PATCH → Write, DELETE → Delete; other
    /// methods → None. Methods are case-sensitive (RFC 9110), so `get` → None.
    pub fn for_method(method: &str) -> Option<Right> {
        match method {
            "GET" | "HEAD" | "OPTIONS" => Some(Right::Read),
            "POST" | "PUT" | "PATCH" => Some(Right::Write),
            "DELETE" => Some(Right::Delete),
            _ => None,
        }
    }

    /// The letter spelling: `'r'`, `'w'` or `'d'`.
    pub fn letter(self) -> char {
        match self {
            Right::Read => 'r',
            Right::Write => 'w',
            Right::Delete => 'd',
        }
    }

    /// The word spelling: `"read"`, `"write"` or `"delete"`.
    pub fn word(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Delete => "delete",
        }
    }

    /// The right spelled by the letter `c` (`r`, `w`, `d`; case-sensitive).
    pub fn from_letter(c: char) -> Option<Right> {
        match c {
            'r' => Some(Right::Read),
            'w' => Some(Right::Write),
            'd' => Some(Right::Delete),
            _ => None,
        }
    }

    /// The right spelled by the word `w` (`read`, `write`, `delete`; case-sensitive).
    pub fn from_word(w: &str) -> Option<Right> {
        match w {
            "read" => Some(Right::Read),
            "write" => Some(Right::Write),
            "delete" => Some(Right::Delete),
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Right::Read => 1,
            Right::Write => 2,
            Right::Delete => 4,
        }
    }
}

impl fmt::Display for Right {
    /// Writes the word spelling (`read`, `write`, `delete`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A set of [`Right`]s (a bit set; the default is the empty set).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Rights(u8);

impl Rights {
    /// The empty set.
    pub const fn empty() -> Rights {
        Rights(0)
    }

    /// All three rights.
    pub const fn all() -> Rights {
        Rights(1 | 2 | 4)
    }

    /// The set holding only `r`.
    pub const fn only(r: Right) -> Rights {
        Rights(r.bit())
    }

    /// Is `r` in the set?
    pub fn contains(self, r: Right) -> bool {
        self.0 & r.bit() != 0
    }

    /// Is the set empty?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Rights present in both sets.
    #[must_use]
    pub fn intersect(self, o: Rights) -> Rights {
        Rights(self.0 & o.0)
    }

    /// Rights present in either set.
    #[must_use]
    pub fn union(self, o: Rights) -> Rights {
        Rights(self.0 | o.0)
    }

    /// This set plus `r`.
    #[must_use]
    pub fn with(self, r: Right) -> Rights {
        Rights(self.0 | r.bit())
    }

    /// Number of rights in the set (0 to 3).
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Is every right of `self` also in `o`?
    pub fn is_subset_of(self, o: Rights) -> bool {
        self.0 & !o.0 == 0
    }

    /// The rights in the set, in canonical (`r`, `w`, `d`) order.
    pub fn iter(self) -> impl Iterator<Item = Right> {
        Right::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Parses a letters spec such as `wd`: non-empty, only `r`/`w`/`d`, each at most
    /// once, any order. Anything else (including `rr`, `R`, `read`) → None.
    pub fn parse_letters(s: &str) -> Option<Rights> {
        if s.is_empty() {
            return None;
        }
        let mut set = Rights::empty();
        for c in s.chars() {
            let r = Right::from_letter(c)?;
            if set.contains(r) {
                return None;
            }
            set = set.with(r);
        }
        Some(set)
    }
}

impl From<Right> for Rights {
    fn from(r: Right) -> Rights {
        Rights::only(r)
    }
}

impl FromIterator<Right> for Rights {
    fn from_iter<I: IntoIterator<Item = Right>>(iter: I) -> Rights {
        iter.into_iter().fold(Rights::empty(), Rights::with)
    }
}

impl fmt::Display for Rights {
    /// Writes the letters in canonical order (`rwd`); the empty set writes nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.iter() {
            write!(f, "{}", r.letter())?;
        }
        Ok(())
    }
}

/// One item of a [`Scope`].
///
/// The derived `PartialEq` is structural (it compares `word` and the order of
/// `grants`); [`Scope`]'s equality is semantic.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ScopeItem {
    /// `resource.rights`, e.g. `links.wd` or `orders.write`.
    Right {
        /// Everything before the last dot; never empty.
        resource: String,
        /// The rights granted on `resource`; never empty in a parsed scope.
        rights: Rights,
        /// `true` if written as a word (`orders.write`), `false` if as letters
        /// (`orders.w`). After duplicates are merged (`a.read a.write`) a word item
        /// can hold several rights; it is then written as one `resource.word` per
        /// right.
        word: bool,
    },
    /// `level[grant, …]`, e.g. `location[orders.write,customer_list.write]` or `account[]`.
    Level {
        /// The access level name (before `[`); never empty.
        level: String,
        /// The grants; always [`ScopeItem::Right`] items, deduplicated.
        grants: Vec<ScopeItem>,
    },
    /// An opaque scope name, e.g. `profile` or `files.ui_manage`.
    Name(String),
}

/// The separator a [`Scope`] is written with.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Separator {
    /// `" "` — the RFC 6749 separator, and the default.
    #[default]
    Space,
    /// `","` — used when the parsed string separated its top-level items with
    /// commas only (e.g. hubiC's `usage.r,account.r,links.wd`).
    Comma,
}

impl Separator {
    /// The separator character.
    pub fn as_char(self) -> char {
        match self {
            Separator::Space => ' ',
            Separator::Comma => ',',
        }
    }
}

/// Why a scope string was rejected.
///
/// The `Display` text is meant for API clients (`error_description` of an
/// `invalid_scope` error): it only ever contains the characters RFC 6749 §5.2
/// allows there (`%x20-21 / %x23-5B / %x5D-7E`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ScopeError {
    /// The string is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// The string has more than [`MAX_ITEMS`] items (grants inside a level count).
    TooManyItems,
    /// The string contains a character outside the scope-token set (a `"`, a `\`,
    /// a control character or a non-ASCII character).
    InvalidChar(char),
    /// A `[` without its `]`, or a `]` without its `[`.
    Unbalanced,
    /// A `[` inside `[...]`.
    NestedLevel,
    /// More than one `level[...]` item.
    TwoLevels,
    /// An item inside `level[...]` that is not a `resource.rights` item (the item).
    BadGrant(String),
    /// A `[` with no level name before it.
    EmptyName,
    /// A `resource.rights` item whose resource is empty, e.g. `.r` (the item).
    EmptyResource(String),
    /// Something other than a separator right after a level's `]`, e.g.
    /// `a[b.r]c` (the offending text).
    MissingSeparator(String),
}

/// Writes a client-supplied string for an error message: quoted, at most 64
/// characters, and any character not allowed in `error_description` replaced by `?`.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        f.write_str("'")?;
        for c in self.0.chars().take(SHOWN) {
            let c = if is_scope_char(c) { c } else { '?' };
            write!(f, "{c}")?;
        }
        if self.0.chars().nth(SHOWN).is_some() {
            f.write_str("...")?;
        }
        f.write_str("'")
    }
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::TooLong => write!(f, "scope is longer than {MAX_LEN} bytes"),
            ScopeError::TooManyItems => write!(f, "scope has more than {MAX_ITEMS} items"),
            ScopeError::InvalidChar(c) => write!(
                f,
                "scope contains an invalid character (U+{:04X}); only printable ASCII \
                 except double quote and backslash is allowed",
                u32::from(*c)
            ),
            ScopeError::Unbalanced => f.write_str("scope has unbalanced brackets"),
            ScopeError::NestedLevel => {
                f.write_str("scope has nested brackets; access levels cannot be nested")
            }
            ScopeError::TwoLevels => {
                f.write_str("scope has more than one access level; at most one is allowed")
            }
            ScopeError::BadGrant(item) => write!(
                f,
                "{} inside an access level is not a resource right \
                 (expected resource.rights, e.g. orders.write or links.rw)",
                Quoted(item)
            ),
            ScopeError::EmptyName => f.write_str("scope has an access level with no name before ["),
            ScopeError::EmptyResource(item) => write!(
                f,
                "scope item {} has an empty resource name before the dot",
                Quoted(item)
            ),
            ScopeError::MissingSeparator(text) => write!(
                f,
                "scope item {} needs a space or comma after the closing ]",
                Quoted(text)
            ),
        }
    }
}

impl std::error::Error for ScopeError {}

/// A parsed, deduplicated scope.
///
/// Equality is semantic: it ignores the separator style, the order of items and
/// of grants, and the spelling of rights (`orders.w` equals `orders.write`).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    items: Vec<ScopeItem>,
    separator: Separator,
}

/// Is `c` allowed anywhere in a scope string (token chars, structural chars, space)?
/// This is also exactly the `error_description` character set.
fn is_scope_char(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')
}

/// Bytes that end a token.
fn is_structural(b: u8) -> bool {
    matches!(b, b' ' | b',' | b'[' | b']')
}

/// Counts one more item; errors once there are more than [`MAX_ITEMS`].
fn bump(count: &mut usize) -> Result<(), ScopeError> {
    *count += 1;
    if *count > MAX_ITEMS {
        Err(ScopeError::TooManyItems)
    } else {
        Ok(())
    }
}

/// Parses a token that contains no structural characters as a Right or a Name.
fn parse_simple(token: &str) -> Result<ScopeItem, ScopeError> {
    if let Some(dot) = token.rfind('.') {
        let (resource, spec) = (&token[..dot], &token[dot + 1..]);
        let parsed = match Right::from_word(spec) {
            Some(r) => Some((Rights::only(r), true)),
            None => Rights::parse_letters(spec).map(|rights| (rights, false)),
        };
        if let Some((rights, word)) = parsed {
            if resource.is_empty() {
                return Err(ScopeError::EmptyResource(token.to_string()));
            }
            return Ok(ScopeItem::Right {
                resource: resource.to_string(),
                rights,
                word,
            });
        }
    }
    Ok(ScopeItem::Name(token.to_string()))
}

/// Adds `item` to `items`, merging Right items on the same resource (union of
/// rights, the first item's spelling wins) and dropping repeated Names.
fn merge_into(items: &mut Vec<ScopeItem>, item: ScopeItem) {
    match item {
        ScopeItem::Right {
            resource,
            rights,
            word,
        } => {
            for existing in items.iter_mut() {
                if let ScopeItem::Right {
                    resource: r,
                    rights: er,
                    ..
                } = existing
                {
                    if *r == resource {
                        *er = er.union(rights);
                        return;
                    }
                }
            }
            items.push(ScopeItem::Right {
                resource,
                rights,
                word,
            });
        }
        ScopeItem::Name(name) => {
            if !items
                .iter()
                .any(|i| matches!(i, ScopeItem::Name(n) if *n == name))
            {
                items.push(ScopeItem::Name(name));
            }
        }
        level @ ScopeItem::Level { .. } => items.push(level),
    }
}

/// Union of the rights that Right items among `items` grant on `resource`.
fn rights_on(items: &[ScopeItem], resource: &str) -> Rights {
    items
        .iter()
        .filter_map(|i| match i {
            ScopeItem::Right {
                resource: r,
                rights,
                ..
            } if r == resource => Some(*rights),
            _ => None,
        })
        .fold(Rights::empty(), Rights::union)
}

/// Keeps the Right items of `requested` with the rights `allowed` also grants;
/// items left with no rights are dropped. Spelling is kept.
fn intersect_rights(requested: &[ScopeItem], allowed: &[ScopeItem]) -> Vec<ScopeItem> {
    requested
        .iter()
        .filter_map(|i| match i {
            ScopeItem::Right {
                resource,
                rights,
                word,
            } => {
                let kept = rights.intersect(rights_on(allowed, resource));
                (!kept.is_empty()).then(|| ScopeItem::Right {
                    resource: resource.clone(),
                    rights: kept,
                    word: *word,
                })
            }
            _ => None,
        })
        .collect()
}

/// Same item, ignoring spelling and grant order.
fn item_equiv(a: &ScopeItem, b: &ScopeItem) -> bool {
    match (a, b) {
        (
            ScopeItem::Right {
                resource: ra,
                rights: xa,
                ..
            },
            ScopeItem::Right {
                resource: rb,
                rights: xb,
                ..
            },
        ) => ra == rb && xa == xb,
        (
            ScopeItem::Level {
                level: la,
                grants: ga,
            },
            ScopeItem::Level {
                level: lb,
                grants: gb,
            },
        ) => la == lb && items_equiv(ga, gb),
        (ScopeItem::Name(a), ScopeItem::Name(b)) => a == b,
        _ => false,
    }
}

/// Same items in any order. Both lists are deduplicated (unique keys), so equal
/// lengths plus "every item of `a` is in `b`" means equal sets.
fn items_equiv(a: &[ScopeItem], b: &[ScopeItem]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| item_equiv(x, y)))
}

/// Writes one item; a word-spelled Right with several rights is written as one
/// `resource.word` per right, joined by `sep`.
fn write_item(f: &mut fmt::Formatter<'_>, item: &ScopeItem, sep: char) -> fmt::Result {
    match item {
        ScopeItem::Right {
            resource,
            rights,
            word: true,
        } => {
            for (n, r) in rights.iter().enumerate() {
                if n > 0 {
                    write!(f, "{sep}")?;
                }
                write!(f, "{resource}.{}", r.word())?;
            }
            Ok(())
        }
        ScopeItem::Right {
            resource, rights, ..
        } => write!(f, "{resource}.{rights}"),
        ScopeItem::Level { level, grants } => {
            write!(f, "{level}[")?;
            for (n, g) in grants.iter().enumerate() {
                if n > 0 {
                    f.write_str(",")?;
                }
                write_item(f, g, ',')?;
            }
            f.write_str("]")
        }
        ScopeItem::Name(name) => f.write_str(name),
    }
}

impl Scope {
    /// Parses a scope string (see the module documentation for the grammar).
    /// The empty string, or one made only of separators, is the empty scope.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > MAX_LEN {
            return Err(ScopeError::TooLong);
        }
        if let Some(c) = s.chars().find(|&c| !is_scope_char(c)) {
            return Err(ScopeError::InvalidChar(c));
        }
        // From here on `s` is ASCII, so every byte index is a char boundary.
        let bytes = s.as_bytes();
        let mut items = Vec::new();
        let mut count = 0usize;
        let mut has_level = false;
        let (mut top_comma, mut top_space) = (false, false);
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b' ' => {
                    top_space = true;
                    i += 1;
                    continue;
                }
                b',' => {
                    top_comma = true;
                    i += 1;
                    continue;
                }
                b']' => return Err(ScopeError::Unbalanced),
                _ => {}
            }
            let start = i;
            while i < bytes.len() && !is_structural(bytes[i]) {
                i += 1;
            }
            let head = &s[start..i];
            if bytes.get(i) != Some(&b'[') {
                // Stopped at a separator, a `]` (rejected at the top of the loop) or
                // the end; `head` is non-empty since bytes[start] is not structural.
                bump(&mut count)?;
                merge_into(&mut items, parse_simple(head)?);
                continue;
            }
            let inner_start = i + 1;
            let mut j = inner_start;
            loop {
                match bytes.get(j) {
                    None => return Err(ScopeError::Unbalanced),
                    Some(b'[') => return Err(ScopeError::NestedLevel),
                    Some(b']') => break,
                    Some(_) => j += 1,
                }
            }
            let inner = &s[inner_start..j];
            i = j + 1;
            match bytes.get(i) {
                None | Some(b' ' | b',') => {}
                Some(b']') => return Err(ScopeError::Unbalanced),
                Some(_) => {
                    let end = s[i..].find([' ', ',']).map_or(s.len(), |off| i + off);
                    return Err(ScopeError::MissingSeparator(s[start..end].to_string()));
                }
            }
            if head.is_empty() {
                return Err(ScopeError::EmptyName);
            }
            if has_level {
                return Err(ScopeError::TwoLevels);
            }
            has_level = true;
            bump(&mut count)?;
            let mut grants = Vec::new();
            for token in inner.split([' ', ',']).filter(|t| !t.is_empty()) {
                bump(&mut count)?;
                match parse_simple(token)? {
                    grant @ ScopeItem::Right { .. } => merge_into(&mut grants, grant),
                    _ => return Err(ScopeError::BadGrant(token.to_string())),
                }
            }
            merge_into(
                &mut items,
                ScopeItem::Level {
                    level: head.to_string(),
                    grants,
                },
            );
        }
        let separator = if top_comma && !top_space {
            Separator::Comma
        } else {
            Separator::Space
        };
        Ok(Scope { items, separator })
    }

    /// The empty scope (space-separated).
    pub fn empty() -> Scope {
        Scope::default()
    }

    /// Does the scope hold no items?
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of (deduplicated, top-level) items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The deduplicated items, in the order they first appeared.
    pub fn items(&self) -> &[ScopeItem] {
        &self.items
    }

    /// The separator `Display` uses.
    pub fn separator(&self) -> Separator {
        self.separator
    }

    /// The same scope, written with `separator`.
    #[must_use]
    pub fn with_separator(mut self, separator: Separator) -> Scope {
        self.separator = separator;
        self
    }

    /// The level item's name and grants, if any.
    fn level_item(&self) -> Option<(&str, &[ScopeItem])> {
        self.items.iter().find_map(|i| match i {
            ScopeItem::Level { level, grants } => Some((level.as_str(), grants.as_slice())),
            _ => None,
        })
    }

    /// `requested ∩ allowed`, with `self` the requested scope.
    ///
    /// Right items keep the rights present in both (matching resource, top-level
    /// items only); items left with no rights are dropped. Names are kept if
    /// `allowed` has the same name. The level is kept if `allowed` has the same
    /// level: grants are intersected with `allowed`'s grants of that level; a level
    /// whose requested grants were non-empty but whose intersection is empty is
    /// dropped; `account[]` (no grants) is kept if `allowed` has that level. The
    /// result keeps the requested scope's separator style, order and spelling.
    #[must_use]
    pub fn intersect(&self, allowed: &Scope) -> Scope {
        let allowed_level = allowed.level_item();
        let mut items = Vec::new();
        for item in &self.items {
            match item {
                ScopeItem::Right { .. } => {
                    items.extend(intersect_rights(std::slice::from_ref(item), &allowed.items));
                }
                ScopeItem::Level { level, grants } => {
                    let Some((allowed_name, allowed_grants)) = allowed_level else {
                        continue;
                    };
                    if allowed_name != level {
                        continue;
                    }
                    let kept = intersect_rights(grants, allowed_grants);
                    if grants.is_empty() || !kept.is_empty() {
                        items.push(ScopeItem::Level {
                            level: level.clone(),
                            grants: kept,
                        });
                    }
                }
                ScopeItem::Name(name) => {
                    if allowed.contains_name(name) {
                        items.push(item.clone());
                    }
                }
            }
        }
        Scope {
            items,
            separator: self.separator,
        }
    }

    /// True if every item of `self` is granted by `other` (self ⊆ other), with the
    /// semantics of [`Scope::intersect`]: `self.intersect(other) == *self`.
    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.intersect(other) == *self
    }

    /// Does this scope grant `right` on `resource` (from a top-level Right item)?
    pub fn allows(&self, resource: &str, right: Right) -> bool {
        rights_on(&self.items, resource).contains(right)
    }

    /// Does this scope grant `right` on `resource` inside access level `level`?
    pub fn level_allows(&self, level: &str, resource: &str, right: Right) -> bool {
        match self.level_item() {
            Some((name, grants)) if name == level => rights_on(grants, resource).contains(right),
            _ => false,
        }
    }

    /// The access level, if any (e.g. `"location"`).
    pub fn level(&self) -> Option<&str> {
        self.level_item().map(|(name, _)| name)
    }

    /// Does the scope hold the opaque name `name`?
    pub fn contains_name(&self, name: &str) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, ScopeItem::Name(n) if n == name))
    }
}

impl fmt::Display for Scope {
    /// Canonical text: items joined by the separator (`,` if the parsed string used
    /// only commas between top-level items, else a space); rights as letters in
    /// `rwd` order or as words; a level as `level[g1,g2]` (always comma-joined);
    /// names as-is. Parsing it gives an equal scope.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = self.separator.as_char();
        for (n, item) in self.items.iter().enumerate() {
            if n > 0 {
                write!(f, "{sep}")?;
            }
            write_item(f, item, sep)?;
        }
        Ok(())
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        items_equiv(&self.items, &other.items)
    }
}

impl Eq for Scope {}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Scope {
        Scope::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> ScopeError {
        match Scope::parse(s) {
            Ok(scope) => panic!("{s:?} should not parse, got {scope:?}"),
            Err(e) => e,
        }
    }

    fn right(resource: &str, letters: &str, word: bool) -> ScopeItem {
        ScopeItem::Right {
            resource: resource.into(),
            rights: Rights::parse_letters(letters).unwrap(),
            word,
        }
    }

    fn name(n: &str) -> ScopeItem {
        ScopeItem::Name(n.into())
    }

    // ---- Right / Rights ----

    #[test]
    fn for_method_all_methods() {
        assert_eq!(Right::for_method("GET"), Some(Right::Read));
        assert_eq!(Right::for_method("HEAD"), Some(Right::Read));
        assert_eq!(Right::for_method("OPTIONS"), Some(Right::Read));
        assert_eq!(Right::for_method("POST"), Some(Right::Write));
        assert_eq!(Right::for_method("PUT"), Some(Right::Write));
        assert_eq!(Right::for_method("PATCH"), Some(Right::Write));
        assert_eq!(Right::for_method("DELETE"), Some(Right::Delete));
        for other in ["CONNECT", "TRACE", "PROPFIND", "get", "Delete", ""] {
            assert_eq!(Right::for_method(other), None, "{other}");
        }
    }

    #[test]
    fn right_spellings() {
        for r in Right::ALL {
            assert_eq!(Right::from_letter(r.letter()), Some(r));
            assert_eq!(Right::from_word(r.word()), Some(r));
            assert_eq!(r.to_string(), r.word());
        }
        assert_eq!(Right::Read.letter(), 'r');
        assert_eq!(Right::Write.letter(), 'w');
        assert_eq!(Right::Delete.letter(), 'd');
        assert_eq!(Right::from_letter('R'), None);
        assert_eq!(Right::from_word("READ"), None);
    }

    #[test]
    fn rights_set_operations() {
        let rw = Rights::only(Right::Read).with(Right::Write);
        let wd: Rights = [Right::Write, Right::Delete].into_iter().collect();
        assert!(rw.contains(Right::Read) && rw.contains(Right::Write));
        assert!(!rw.contains(Right::Delete));
        assert_eq!(rw.intersect(wd), Rights::from(Right::Write));
        assert_eq!(rw.union(wd), Rights::all());
        assert!(Rights::default().is_empty());
        assert_eq!(Rights::default(), Rights::empty());
        assert!(rw.intersect(Rights::only(Right::Delete)).is_empty());
        assert_eq!(rw.len(), 2);
        assert_eq!(Rights::all().len(), 3);
        assert!(rw.is_subset_of(Rights::all()));
        assert!(!rw.is_subset_of(wd));
        assert_eq!(Rights::all().to_string(), "rwd");
        assert_eq!(Rights::empty().to_string(), "");
        assert_eq!(
            wd.iter().collect::<Vec<_>>(),
            vec![Right::Write, Right::Delete]
        );
    }

    #[test]
    fn rights_parse_letters() {
        assert_eq!(Rights::parse_letters("dw"), Rights::parse_letters("wd"));
        assert_eq!(Rights::parse_letters("drw"), Some(Rights::all()));
        for bad in ["", "rr", "rwr", "x", "R", "read", "rwdx"] {
            assert_eq!(Rights::parse_letters(bad), None, "{bad}");
        }
    }

    // ---- seed examples ----

    #[test]
    fn hubic_commas() {
        let s = p("usage.r,account.r,links.wd");
        assert_eq!(
            s.items(),
            &[
                right("usage", "r", false),
                right("account", "r", false),
                right("links", "wd", false)
            ]
        );
        assert_eq!(s.separator(), Separator::Comma);
        assert_eq!(s.to_string(), "usage.r,account.r,links.wd");
        assert!(s.allows("links", Right::Write));
        assert!(s.allows("links", Right::Delete));
        assert!(!s.allows("links", Right::Read));
        assert!(s.allows("usage", Right::Read));
        assert!(!s.allows("usage", Right::Write));
        assert!(!s.allows("nope", Right::Read));
        assert_eq!(s.level(), None);
    }

    #[test]
    fn hubrise_level_and_profile() {
        let s = p("location[orders.write,customer_list.write],profile");
        assert_eq!(s.level(), Some("location"));
        assert_eq!(
            s.items()[0],
            ScopeItem::Level {
                level: "location".into(),
                grants: vec![
                    right("orders", "w", true),
                    right("customer_list", "w", true)
                ],
            }
        );
        assert!(s.contains_name("profile"));
        assert!(s.level_allows("location", "orders", Right::Write));
        assert!(s.level_allows("location", "customer_list", Right::Write));
        assert!(!s.level_allows("location", "orders", Right::Read));
        assert!(!s.level_allows("account", "orders", Right::Write));
        // Level grants are not top-level rights.
        assert!(!s.allows("orders", Right::Write));
        assert_eq!(s.separator(), Separator::Comma);
        assert_eq!(
            s.to_string(),
            "location[orders.write,customer_list.write],profile"
        );
    }

    #[test]
    fn hubrise_trailing_comma_in_level() {
        let s = p("location[orders.write,customer_list.write,]");
        assert_eq!(s, p("location[orders.write,customer_list.write]"));
        assert_eq!(s.to_string(), "location[orders.write,customer_list.write]");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn hubrise_empty_level() {
        let s = p("account[],profile");
        assert_eq!(s.level(), Some("account"));
        assert_eq!(
            s.items(),
            &[
                ScopeItem::Level {
                    level: "account".into(),
                    grants: vec![]
                },
                name("profile")
            ]
        );
        assert!(!s.level_allows("account", "x", Right::Read));
        assert_eq!(s.to_string(), "account[],profile");
    }

    #[test]
    fn profile_with_email_is_a_name() {
        let s = p("profile_with_email");
        assert_eq!(s.items(), &[name("profile_with_email")]);
        assert!(s.contains_name("profile_with_email"));
        assert!(!s.contains_name("profile"));
        assert_eq!(s.separator(), Separator::Space);
    }

    #[test]
    fn hubspot_words_with_spaces() {
        let s = p("crm.objects.contacts.read crm.objects.contacts.write oauth");
        // Same resource: merged into one word-spelled item holding both rights.
        assert_eq!(s.len(), 2);
        assert_eq!(s.items()[0], right("crm.objects.contacts", "rw", true));
        assert_eq!(s.items()[1], name("oauth"));
        assert!(s.allows("crm.objects.contacts", Right::Read));
        assert!(s.allows("crm.objects.contacts", Right::Write));
        assert!(!s.allows("crm.objects.contacts", Right::Delete));
        assert!(!s.allows("crm.objects", Right::Read));
        assert_eq!(s.separator(), Separator::Space);
        // The word spelling survives the merge.
        assert_eq!(
            s.to_string(),
            "crm.objects.contacts.read crm.objects.contacts.write oauth"
        );
    }

    #[test]
    fn opaque_names_with_dots() {
        for n in [
            "files.ui_manage",
            "files.content.write_all",
            "a.b.c",
            "foo.",
            ".foo",
            "openid",
            "x.readwrite",
            "https://example.com/api.all",
        ] {
            let s = p(n);
            assert_eq!(s.items(), &[name(n)], "{n}");
            assert_eq!(s.to_string(), n);
        }
    }

    #[test]
    fn invalid_letters_make_an_opaque_name() {
        // Documented choice: not a rights spec → opaque name, not an error.
        for n in ["links.rr", "links.rwr", "links.rx", "links.R", "links.READ"] {
            let s = p(n);
            assert_eq!(s.items(), &[name(n)], "{n}");
            assert!(!s.allows("links", Right::Read));
            assert!(s.contains_name(n));
        }
    }

    #[test]
    fn rights_letters_any_order_and_resource_is_before_last_dot() {
        assert_eq!(p("links.dw").items(), &[right("links", "wd", false)]);
        assert_eq!(p("links.dw").to_string(), "links.wd");
        assert_eq!(p("links.dwr").to_string(), "links.rwd");
        assert_eq!(p("a.b.r").items(), &[right("a.b", "r", false)]);
        assert_eq!(p("a..r").items(), &[right("a.", "r", false)]);
        assert_eq!(p("orders.delete").items(), &[right("orders", "d", true)]);
    }

    #[test]
    fn empty_scopes() {
        for s in ["", " ", ",", " , ,, "] {
            let scope = p(s);
            assert!(scope.is_empty(), "{s:?}");
            assert_eq!(scope, Scope::empty());
            assert_eq!(scope.to_string(), "");
        }
        assert!(Scope::empty().is_empty());
        assert_eq!(Scope::empty().len(), 0);
        assert_eq!(Scope::empty().level(), None);
    }

    #[test]
    fn separators_runs_and_style() {
        let s = p("  a.r ,, b.w  profile ,");
        assert_eq!(s.len(), 3);
        assert_eq!(s.separator(), Separator::Space);
        assert_eq!(s.to_string(), "a.r b.w profile");
        assert_eq!(p("a,b").separator(), Separator::Comma);
        assert_eq!(p("a,,b,").separator(), Separator::Comma);
        assert_eq!(p("a b").separator(), Separator::Space);
        assert_eq!(p("a, b").separator(), Separator::Space);
        assert_eq!(p("profile").separator(), Separator::Space);
        // Commas inside brackets say nothing about the top-level style.
        assert_eq!(p("l[a.r,b.r]").separator(), Separator::Space);
        assert_eq!(p("l[a.r,b.r] x").separator(), Separator::Space);
        // Spaces inside brackets neither.
        let s = p("l[a.r b.r],x");
        assert_eq!(s.separator(), Separator::Comma);
        assert_eq!(s.to_string(), "l[a.r,b.r],x");
        assert_eq!(p("a b").with_separator(Separator::Comma).to_string(), "a,b");
    }

    #[test]
    fn level_with_spaces_inside_and_names_with_dots() {
        let s = p("loc.v2[ orders.write  customer_list.rw ] x");
        assert_eq!(s.level(), Some("loc.v2"));
        assert!(s.level_allows("loc.v2", "customer_list", Right::Write));
        assert_eq!(s.to_string(), "loc.v2[orders.write,customer_list.rw] x");
    }

    #[test]
    fn from_str_parses() {
        let s: Scope = "usage.r,profile".parse().unwrap();
        assert_eq!(s, p("usage.r profile"));
        assert_eq!("\"".parse::<Scope>(), Err(ScopeError::InvalidChar('"')));
    }

    // ---- dedup and equality ----

    #[test]
    fn dedup_names_and_rights() {
        assert_eq!(p("profile profile,profile").items(), &[name("profile")]);
        let s = p("a.r a.w b.d a.r");
        assert_eq!(
            s.items(),
            &[right("a", "rw", false), right("b", "d", false)]
        );
        assert_eq!(s.to_string(), "a.rw b.d");
        assert_eq!(p("a.read a.read").items(), &[right("a", "r", true)]);
        // The first item's spelling wins.
        assert_eq!(p("a.write a.w").to_string(), "a.write");
        assert_eq!(p("a.w a.write").to_string(), "a.w");
        assert_eq!(p("a.w a.read").to_string(), "a.rw");
        assert_eq!(p("a.delete,a.r").to_string(), "a.read,a.delete");
        // Grants inside a level are deduplicated too.
        assert_eq!(p("l[a.r,a.w,b.d,a.r]").to_string(), "l[a.rw,b.d]");
        assert_eq!(p("l[a.read,a.write]").to_string(), "l[a.read,a.write]");
        // Names and rights never collide.
        assert_eq!(p("account account[] account.r").len(), 3);
    }

    #[test]
    fn equality_ignores_order_style_and_spelling() {
        assert_eq!(p("a.r,b.w,profile"), p("profile b.w a.r"));
        assert_eq!(p("orders.write"), p("orders.w"));
        assert_eq!(p("a.read a.write"), p("a.rw"));
        assert_eq!(p("l[a.r,b.w],x"), p("x l[b.write a.read]"));
        assert_ne!(p("a.r"), p("a.rw"));
        assert_ne!(p("a.r"), p("b.r"));
        assert_ne!(p("l[a.r]"), p("m[a.r]"));
        assert_ne!(p("l[a.r]"), p("l[a.rw]"));
        assert_ne!(p("l[]"), p("l[a.r]"));
        assert_ne!(p("profile"), p("profile oauth"));
        assert_ne!(p("account"), p("account[]"));
    }

    #[test]
    fn round_trip() {
        for s in [
            "usage.r,account.r,links.wd",
            "location[orders.write,customer_list.write],profile",
            "location[orders.write,customer_list.write,]",
            "account[],profile",
            "profile_with_email",
            "crm.objects.contacts.read crm.objects.contacts.write oauth",
            "files.ui_manage a.b.c links.rr",
            " ,a.dw,,l[x.r y.delete x.w],  ",
            "a.delete a.read b.rw,c",
            "l[] a",
            "",
        ] {
            let first = p(s);
            let text = first.to_string();
            let second = p(&text);
            assert_eq!(first, second, "{s:?} -> {text:?}");
            assert_eq!(second.items(), first.items(), "{s:?} -> {text:?}");
            assert_eq!(second.separator(), first.separator(), "{s:?}");
            assert_eq!(second.to_string(), text, "{s:?}");
            assert!(text.len() <= s.len(), "{s:?} -> {text:?}");
        }
    }

    // ---- intersect / subset ----

    #[test]
    fn intersect_letters() {
        let got = p("links.rwd usage.r account.r").intersect(&p("links.r usage.w account.rw"));
        assert_eq!(got, p("links.r account.r"));
        assert_eq!(got.to_string(), "links.r account.r");
    }

    #[test]
    fn intersect_words_and_letters() {
        // A word item stays a word item when its right survives.
        assert_eq!(
            p("orders.write").intersect(&p("orders.rw")).to_string(),
            "orders.write"
        );
        // ... and is dropped otherwise.
        assert!(p("orders.write").intersect(&p("orders.r")).is_empty());
        // Letters stay letters, whatever allowed spelled.
        assert_eq!(
            p("orders.rw").intersect(&p("orders.read")).to_string(),
            "orders.r"
        );
        // Merged words keep the word spelling for the rights that survive.
        assert_eq!(
            p("crm.c.read crm.c.write oauth")
                .intersect(&p("crm.c.r oauth"))
                .to_string(),
            "crm.c.read oauth"
        );
        assert_eq!(
            p("crm.c.read crm.c.write crm.c.delete")
                .intersect(&p("crm.c.rd"))
                .to_string(),
            "crm.c.read crm.c.delete"
        );
    }

    #[test]
    fn intersect_names() {
        assert_eq!(
            p("profile oauth").intersect(&p("oauth")).to_string(),
            "oauth"
        );
        // A name is only granted by the identical name.
        assert!(p("links.rr").intersect(&p("links.r")).is_empty());
        assert!(p("links").intersect(&p("links.rwd")).is_empty());
        assert!(p("account").intersect(&p("account[]")).is_empty());
        assert_eq!(
            p("links.rr").intersect(&p("links.rr")).to_string(),
            "links.rr"
        );
    }

    #[test]
    fn intersect_levels() {
        let requested = p("location[orders.write,customer_list.write],profile");
        let got = requested.intersect(&p("location[orders.rw],profile"));
        assert_eq!(got.to_string(), "location[orders.write],profile");
        // Different level: dropped.
        assert_eq!(
            requested
                .intersect(&p("account[orders.rw customer_list.rw] profile"))
                .to_string(),
            "profile"
        );
        // Non-empty grants with an empty intersection: dropped.
        assert!(p("location[orders.write]")
            .intersect(&p("location[orders.r]"))
            .is_empty());
        assert!(p("location[orders.write]")
            .intersect(&p("location[]"))
            .is_empty());
        // Level grants are not satisfied by top-level rights.
        assert!(p("location[orders.w]").intersect(&p("orders.w")).is_empty());
        // Top-level rights are not satisfied by level grants.
        assert!(p("orders.w").intersect(&p("location[orders.w]")).is_empty());
        // An empty level is kept if allowed has that level.
        assert_eq!(
            p("account[]").intersect(&p("account[x.r]")).to_string(),
            "account[]"
        );
        assert_eq!(
            p("account[],profile")
                .intersect(&p("account[] profile"))
                .to_string(),
            "account[],profile"
        );
        assert!(p("account[]").intersect(&p("profile")).is_empty());
        assert!(p("account[]").intersect(&p("location[]")).is_empty());
    }

    #[test]
    fn intersect_keeps_requested_style_and_order() {
        let got = p("usage.r,account.r,links.wd").intersect(&p("links.rwd account.r usage.r"));
        assert_eq!(got.separator(), Separator::Comma);
        assert_eq!(got.to_string(), "usage.r,account.r,links.wd");
        let got = p("links.wd account.r").intersect(&p("account.r,links.w"));
        assert_eq!(got.separator(), Separator::Space);
        assert_eq!(got.to_string(), "links.w account.r");
        assert!(Scope::empty().intersect(&p("a.r")).is_empty());
        assert!(p("a.r").intersect(&Scope::empty()).is_empty());
    }

    #[test]
    fn subset() {
        assert!(p("a.r").is_subset_of(&p("a.rw")));
        assert!(p("a.read").is_subset_of(&p("a.r")));
        assert!(!p("a.rw").is_subset_of(&p("a.r")));
        assert!(p("profile").is_subset_of(&p("profile oauth")));
        assert!(!p("profile oauth").is_subset_of(&p("profile")));
        assert!(p("").is_subset_of(&p("")));
        assert!(p("").is_subset_of(&p("a.r")));
        assert!(!p("a.r").is_subset_of(&p("")));
        assert!(p("l[a.r]").is_subset_of(&p("l[a.rw] x")));
        assert!(!p("l[a.rw]").is_subset_of(&p("l[a.r]")));
        assert!(!p("l[a.r,b.r]").is_subset_of(&p("l[a.r]")));
        assert!(p("l[]").is_subset_of(&p("l[a.r]")));
        assert!(!p("l[a.r]").is_subset_of(&p("l[]")));
        assert!(!p("l[]").is_subset_of(&p("m[]")));
        let big = p("location[orders.rw,customer_list.write],profile,usage.r");
        for small in [
            "location[orders.write]",
            "location[customer_list.w,orders.r],usage.r",
            "profile",
            "location[]",
        ] {
            assert!(p(small).is_subset_of(&big), "{small}");
        }
        assert!(big.is_subset_of(&big));
    }

    #[test]
    fn allows_and_level_allows_are_separate() {
        let s = p("orders.r location[orders.w] account.rwd");
        assert!(s.allows("orders", Right::Read));
        assert!(!s.allows("orders", Right::Write));
        assert!(s.level_allows("location", "orders", Right::Write));
        assert!(!s.level_allows("location", "orders", Right::Read));
        assert!(!s.level_allows("location", "account", Right::Read));
        assert!(s.allows("account", Right::Delete));
        assert!(!s.allows("location", Right::Read));
        assert!(!p("profile").level_allows("profile", "x", Right::Read));
    }

    // ---- errors ----

    #[test]
    fn error_two_levels() {
        assert_eq!(err("location[orders.r],account[]"), ScopeError::TwoLevels);
        assert_eq!(err("a[] b[]"), ScopeError::TwoLevels);
        assert_eq!(err("a[] a[]"), ScopeError::TwoLevels);
    }

    #[test]
    fn error_nested() {
        assert_eq!(err("location[account[]]"), ScopeError::NestedLevel);
        assert_eq!(err("l[[a.r]]"), ScopeError::NestedLevel);
        assert_eq!(err("l[a.r,m[b.r]]"), ScopeError::NestedLevel);
    }

    #[test]
    fn error_unbalanced() {
        for s in [
            "location[orders.write",
            "location[",
            "]",
            "a]",
            "profile ]",
            "l[a.r]]",
            "l[] ]",
            "a.r]",
        ] {
            assert_eq!(err(s), ScopeError::Unbalanced, "{s:?}");
        }
    }

    #[test]
    fn error_bad_grant() {
        assert_eq!(
            err("location[profile]"),
            ScopeError::BadGrant("profile".into())
        );
        assert_eq!(
            err("location[orders.write,links.rr]"),
            ScopeError::BadGrant("links.rr".into())
        );
        assert_eq!(
            err("location[files.ui_manage]"),
            ScopeError::BadGrant("files.ui_manage".into())
        );
    }

    #[test]
    fn error_empty_names() {
        assert_eq!(err(".r"), ScopeError::EmptyResource(".r".into()));
        assert_eq!(err("a.r .read"), ScopeError::EmptyResource(".read".into()));
        assert_eq!(err("l[.w]"), ScopeError::EmptyResource(".w".into()));
        assert_eq!(err("[a.r]"), ScopeError::EmptyName);
        assert_eq!(err("profile,[]"), ScopeError::EmptyName);
    }

    #[test]
    fn error_missing_separator_after_level() {
        assert_eq!(
            err("l[a.r]b.w"),
            ScopeError::MissingSeparator("l[a.r]b.w".into())
        );
        assert_eq!(
            err("x l[a.r]b c"),
            ScopeError::MissingSeparator("l[a.r]b".into())
        );
        assert_eq!(
            err("l[a.r][b.r]"),
            ScopeError::MissingSeparator("l[a.r][b.r]".into())
        );
    }

    #[test]
    fn error_invalid_chars() {
        for (s, c) in [
            ("a\"b", '"'),
            ("a\\b", '\\'),
            ("caf\u{e9}", '\u{e9}'),
            ("a\u{1F600}", '\u{1F600}'),
            ("a\tb", '\t'),
            ("a\nb", '\n'),
            ("a\rb", '\r'),
            ("a\0", '\0'),
            ("a\u{7f}", '\u{7f}'),
            ("a\u{a0}b", '\u{a0}'),
            ("l[a.r\"]", '"'),
        ] {
            assert_eq!(err(s), ScopeError::InvalidChar(c), "{s:?}");
        }
    }

    #[test]
    fn error_too_long() {
        let ok = "a".repeat(MAX_LEN);
        assert_eq!(p(&ok).len(), 1);
        assert_eq!(err(&"a".repeat(MAX_LEN + 1)), ScopeError::TooLong);
        // Separators count too, and length is checked before anything else.
        assert_eq!(
            err(&format!("a{}\"", " ".repeat(MAX_LEN))),
            ScopeError::TooLong
        );
    }

    #[test]
    fn error_too_many_items() {
        let names = |n: usize| (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>();
        assert_eq!(p(&names(MAX_ITEMS).join(" ")).len(), MAX_ITEMS);
        assert_eq!(
            err(&names(MAX_ITEMS + 1).join(",")),
            ScopeError::TooManyItems
        );
        // Grants count, and so does the level item itself.
        let grants = |n: usize| {
            (0..n)
                .map(|i| format!("r{i}.r"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(p(&format!("l[{}]", grants(MAX_ITEMS - 1))).len(), 1);
        assert_eq!(
            err(&format!("l[{}]", grants(MAX_ITEMS))),
            ScopeError::TooManyItems
        );
        // Duplicates count before they are merged.
        assert_eq!(
            err(&vec!["profile"; MAX_ITEMS + 1].join(" ")),
            ScopeError::TooManyItems
        );
    }

    #[test]
    fn error_display_is_safe_for_error_description() {
        let long = "x".repeat(200);
        let errors = [
            ScopeError::TooLong,
            ScopeError::TooManyItems,
            ScopeError::InvalidChar('"'),
            ScopeError::InvalidChar('\\'),
            ScopeError::InvalidChar('\n'),
            ScopeError::InvalidChar('\u{1F600}'),
            ScopeError::Unbalanced,
            ScopeError::NestedLevel,
            ScopeError::TwoLevels,
            ScopeError::BadGrant("profile".into()),
            ScopeError::BadGrant("we\"ird\\\u{e9}\n".into()),
            ScopeError::BadGrant(long.clone()),
            ScopeError::EmptyName,
            ScopeError::EmptyResource(".r".into()),
            ScopeError::MissingSeparator("l[a.r]b".into()),
        ];
        for e in &errors {
            let text = e.to_string();
            assert!(!text.is_empty());
            assert!(
                text.chars()
                    .all(|c| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')),
                "{text:?}"
            );
            assert!(text.len() < 200, "{text:?}");
        }
        assert!(ScopeError::InvalidChar('"').to_string().contains("U+0022"));
        assert!(ScopeError::BadGrant("profile".into())
            .to_string()
            .contains("'profile'"));
        assert!(ScopeError::BadGrant("we\"ird".into())
            .to_string()
            .contains("'we?ird'"));
        assert!(ScopeError::TooLong.to_string().contains("2048"));
        assert!(ScopeError::TooManyItems.to_string().contains("64"));
        // Usable as a std error.
        let boxed: Box<dyn std::error::Error> = Box::new(ScopeError::Unbalanced);
        assert_eq!(boxed.to_string(), "scope has unbalanced brackets");
    }
}
