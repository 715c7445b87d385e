//! Reading mimalloc-bench's `bench/CMakeLists.txt` without CMake. The user's machine need not
//! have CMake, and CMake gives up on the whole folder when any target's source is missing
//! (a plain checkout lacks shbench's, which mimalloc-bench downloads apart); reading the file
//! ourselves keeps the checkout the one source of what to build and how, and lets the build
//! skip only the targets it cannot make.
//!
//! The subset read is what that file uses: `set`, `unset`, `list(APPEND)`, `string(APPEND)`,
//! `function` (the file's `PREPEND`), `foreach`, `if`/`elseif`/`else` (conditions with `NOT`,
//! `AND`, `OR`, `DEFINED`, `STREQUAL`, `EQUAL` and `MATCHES` on alternatives of plain words),
//! `add_executable` and `target_compile_options`, `_definitions`, `_include_directories` and
//! `_link_libraries`, with `${}` references and, in target properties, generator expressions
//! (see [`genex`]). `message`, `project` and `cmake_minimum_required` change nothing here, and
//! `add_subdirectory` is not followed: the runner needs no target from a subdirectory (the
//! one there holds security tests). Anything else is an error that names its line, so that a
//! checkout this reader does not understand fails loudly instead of building the wrong thing.

use std::collections::HashMap;

/// The compilers' CMake identities (`CMAKE_<LANG>_COMPILER_ID`): "GNU", "Clang",
/// "AppleClang".
pub struct Compilers {
    pub c_id: String,
    pub cxx_id: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    C,
    Cxx,
}

/// An `add_executable` target and the properties set on it, generator expressions left in.
#[derive(Default, Debug)]
pub struct Target {
    pub name: String,
    /// Relative to the folder (or absolute).
    pub sources: Vec<String>,
    pub options: Vec<String>,
    pub definitions: Vec<String>,
    pub include_dirs: Vec<String>,
    pub libraries: Vec<String>,
    /// `CMAKE_C_STANDARD` and `CMAKE_CXX_STANDARD` where the target was defined (CMake
    /// initializes the target's standard from them then).
    pub c_standard: Option<String>,
    pub cxx_standard: Option<String>,
}

/// What the file defines.
pub struct Project {
    pub targets: Vec<Target>,
    /// `CMAKE_C_FLAGS` and `CMAKE_CXX_FLAGS` at the end of the file (CMake uses the final
    /// values for every target of the directory), split into words.
    pub c_flags: Vec<String>,
    pub cxx_flags: Vec<String>,
}

/// Interpret the file's `text`; an error is one line, `CMakeLists.txt:LINE: what`.
pub fn read(text: &str, compilers: &Compilers) -> Result<Project, String> {
    let calls = parse(text)?;
    let mut vars = HashMap::new();
    for (k, v) in [
        ("CMAKE_C_COMPILER_ID", compilers.c_id.as_str()),
        ("CMAKE_CXX_COMPILER_ID", compilers.cxx_id.as_str()),
        ("UNIX", "1"),
        ("LINUX", "1"),
        ("CMAKE_SYSTEM_NAME", "Linux"),
        ("CMAKE_C_FLAGS", ""),
        ("CMAKE_CXX_FLAGS", ""),
    ] {
        vars.insert(k.to_string(), v.to_string());
    }
    let mut i = Interp { scopes: vec![vars], functions: HashMap::new(), targets: Vec::new() };
    i.run(&calls)?;
    let flags = |name: &str| i.get(name).split_whitespace().map(String::from).collect();
    Ok(Project { c_flags: flags("CMAKE_C_FLAGS"), cxx_flags: flags("CMAKE_CXX_FLAGS"), targets: i.targets })
}

/// Evaluate the generator expressions in one item of a target property, for a source in
/// `lang` (None: a link item); an item that comes out empty is dropped by the caller. Known:
/// `$<C_COMPILER_ID:ids>`, `$<CXX_COMPILER_ID:ids>`, `$<COMPILE_LANGUAGE:langs>`, `$<CONFIG:cfgs>`
/// (the file's build type is Release), `$<BOOL:x>`, `$<NOT:b>`, `$<AND:…>`, `$<OR:…>`,
/// `$<0:x>`/`$<1:x>` and the escapes `$<ANGLE-R>`, `$<COMMA>`, `$<SEMICOLON>`.
pub fn genex(item: &str, lang: Option<Lang>, compilers: &Compilers) -> Result<String, String> {
    let Some(start) = item.find("$<") else { return Ok(item.to_string()) };
    // The expression's end: the '>' that closes it, past any nested ones.
    let mut depth = 0;
    let mut end = None;
    let bytes = item.as_bytes();
    let mut k = start;
    while k < bytes.len() {
        if bytes[k] == b'$' && bytes.get(k + 1) == Some(&b'<') {
            depth += 1;
            k += 2;
            continue;
        }
        if bytes[k] == b'>' {
            depth -= 1;
            if depth == 0 {
                end = Some(k);
                break;
            }
        }
        k += 1;
    }
    let end = end.ok_or_else(|| format!("unterminated generator expression in {item:?}"))?;
    let inner = genex(&item[start + 2..end], lang, compilers)?;
    let (name, arg) = inner.split_once(':').unwrap_or((&inner, ""));
    let yes = |b: bool| if b { "1".to_string() } else { "0".to_string() };
    let one_of = |value: &str| arg.split(',').any(|a| a == value);
    let value = match name {
        "0" => String::new(),
        "1" => arg.to_string(),
        "C_COMPILER_ID" if arg.is_empty() => compilers.c_id.clone(),
        "C_COMPILER_ID" => yes(one_of(&compilers.c_id)),
        "CXX_COMPILER_ID" if arg.is_empty() => compilers.cxx_id.clone(),
        "CXX_COMPILER_ID" => yes(one_of(&compilers.cxx_id)),
        "COMPILE_LANGUAGE" => {
            let lang = lang.ok_or_else(|| format!("{item:?}: $<COMPILE_LANGUAGE> outside compiling"))?;
            yes(one_of(if lang == Lang::C { "C" } else { "CXX" }))
        }
        "CONFIG" => yes(arg.split(',').any(|c| c.eq_ignore_ascii_case("Release"))),
        "BOOL" => yes(constant(arg) != Some(false)),
        "ANGLE-R" => ">".into(),
        "COMMA" => ",".into(),
        "SEMICOLON" => ";".into(),
        "NOT" => yes(arg == "0"),
        "AND" => yes(arg.split(',').all(|b| b == "1")),
        "OR" => yes(arg.split(',').any(|b| b == "1")),
        _ => return Err(format!("generator expression $<{inner}> is not understood")),
    };
    let rest = genex(&item[end + 1..], lang, compilers)?;
    Ok(format!("{}{value}{rest}", &item[..start]))
}

/// One argument as written: its text (escapes and references not yet resolved), and whether
/// it was in quotes (a quoted argument is one value; an unquoted one splits on `;`).
#[derive(Clone, Debug)]
struct Arg {
    text: String,
    quoted: bool,
}

#[derive(Clone, Debug)]
struct Call {
    /// Lowercase: CMake's command names are case-insensitive.
    name: String,
    args: Vec<Arg>,
    line: usize,
}

fn parse(text: &str) -> Result<Vec<Call>, String> {
    let mut sc = Scanner { s: text.chars().collect(), k: 0, line: 1 };
    let mut calls = Vec::new();
    loop {
        sc.skip_blanks();
        match sc.peek() {
            None => return Ok(calls),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => calls.push(sc.call()?),
            Some(c) => return Err(sc.error(sc.line, &format!("unexpected {c:?}"))),
        }
    }
}

/// Reads the file's commands: `name(arguments)`, with comments and line numbers.
struct Scanner {
    s: Vec<char>,
    k: usize,
    line: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.s.get(self.k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.k += 1;
        self.line += usize::from(c == '\n');
        Some(c)
    }

    fn error(&self, line: usize, what: &str) -> String {
        format!("CMakeLists.txt:{line}: {what}")
    }

    /// Past whitespace and comments (`#` to the end of the line, or `#[[ … ]]`).
    fn skip_blanks(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                let bracket = self.s.get(self.k + 1) == Some(&'[') && self.s.get(self.k + 2) == Some(&'[');
                while let Some(c) = self.peek() {
                    if bracket && c == ']' && self.s.get(self.k + 1) == Some(&']') {
                        self.k += 2;
                        break;
                    }
                    if !bracket && c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                return;
            }
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        let line = self.line;
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c.to_ascii_lowercase());
            self.bump();
        }
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
        if self.bump() != Some('(') {
            return Err(self.error(line, &format!("expected ( after {name}")));
        }
        let mut args = Vec::new();
        // Parentheses inside the arguments are arguments themselves.
        let mut depth = 0;
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Err(self.error(line, &format!("{name}( never closed"))),
                Some(')') if depth == 0 => {
                    self.bump();
                    return Ok(Call { name, args, line });
                }
                Some(c @ ('(' | ')')) => {
                    depth += if c == '(' { 1 } else { -1 };
                    args.push(Arg { text: c.to_string(), quoted: false });
                    self.bump();
                }
                Some('"') => args.push(self.quoted(line)?),
                Some('[') if matches!(self.s.get(self.k + 1), Some('[' | '=')) => {
                    return Err(self.error(self.line, "bracket arguments are not understood"));
                }
                Some(_) => args.push(self.unquoted()),
            }
        }
    }

    /// A quoted argument, escapes kept for [`Interp::resolve`].
    fn quoted(&mut self, line: usize) -> Result<Arg, String> {
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error(line, "unterminated quoted argument")),
                Some('"') => return Ok(Arg { text, quoted: true }),
                Some('\\') => {
                    text.push('\\');
                    text.extend(self.bump());
                }
                Some(c) => text.push(c),
            }
        }
    }

    fn unquoted(&mut self) -> Arg {
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, '(' | ')' | '#' | '"') {
                break;
            }
            text.push(c);
            self.bump();
            if c == '\\' {
                text.extend(self.bump());
            }
        }
        Arg { text, quoted: false }
    }
}

struct Function {
    params: Vec<String>,
    body: Vec<Call>,
}

struct Interp {
    /// The variables of each scope: the file's, then one per function call being run (a
    /// function starts with a copy of its caller's).
    scopes: Vec<HashMap<String, String>>,
    functions: HashMap<String, Function>,
    targets: Vec<Target>,
}

impl Interp {
    fn get(&self, name: &str) -> &str {
        self.vars().get(name).map_or("", String::as_str)
    }

    fn vars(&self) -> &HashMap<String, String> {
        self.scopes.last().expect("the file's scope")
    }

    fn set(&mut self, name: String, value: String) {
        self.scopes.last_mut().expect("the file's scope").insert(name, value);
    }

    fn run(&mut self, calls: &[Call]) -> Result<(), String> {
        let mut k = 0;
        while k < calls.len() {
            let c = &calls[k];
            let at = |what: String| format!("CMakeLists.txt:{}: {what}", c.line);
            match c.name.as_str() {
                "function" => {
                    let end = block_end(calls, k, "function", "endfunction").map_err(at)?;
                    let words = self.expand(&c.args).map_err(at)?;
                    let Some((name, params)) = words.split_first() else {
                        return Err(at("function() without a name".into()));
                    };
                    let body = calls[k + 1..end].to_vec();
                    self.functions
                        .insert(name.to_ascii_lowercase(), Function { params: params.to_vec(), body });
                    k = end + 1;
                }
                "foreach" => {
                    let end = block_end(calls, k, "foreach", "endforeach").map_err(at)?;
                    let words = self.expand(&c.args).map_err(at)?;
                    let Some((var, items)) = words.split_first() else {
                        return Err(at("foreach() without a variable".into()));
                    };
                    let items: Vec<String> = match items.first().map(String::as_str) {
                        Some("IN") => return Err(at("foreach(… IN …) is not understood".into())),
                        _ => items.to_vec(),
                    };
                    for item in items {
                        self.set(var.clone(), item);
                        self.run(&calls[k + 1..end])?;
                    }
                    k = end + 1;
                }
                "if" => {
                    let (branches, end) = if_branches(calls, k).map_err(at)?;
                    for (cond, body) in branches {
                        let taken = match cond {
                            Some(args) => self
                                .condition(args)
                                .map_err(|e| format!("CMakeLists.txt:{}: {e}", calls[body.start - 1].line))?,
                            None => true,
                        };
                        if taken {
                            self.run(&calls[body])?;
                            break;
                        }
                    }
                    k = end + 1;
                }
                name if self.functions.contains_key(name) => {
                    self.call_function(c)?;
                    k += 1;
                }
                _ => {
                    self.command(c).map_err(at)?;
                    k += 1;
                }
            }
        }
        Ok(())
    }

    /// A call of a function the file defined: its body runs in a scope of its own, with its
    /// parameters, ARGN, ARGV, ARGC and ARGV0… set (errors name the body's lines).
    fn call_function(&mut self, c: &Call) -> Result<(), String> {
        let words = self.expand(&c.args).map_err(|e| format!("CMakeLists.txt:{}: {e}", c.line))?;
        let f = &self.functions[&c.name];
        if words.len() < f.params.len() {
            return Err(format!(
                "CMakeLists.txt:{}: {}() takes {} arguments",
                c.line,
                c.name,
                f.params.len()
            ));
        }
        let mut scope = self.vars().clone();
        for (p, w) in f.params.iter().zip(&words) {
            scope.insert(p.clone(), w.clone());
        }
        scope.insert("ARGN".into(), words[f.params.len()..].join(";"));
        scope.insert("ARGV".into(), words.join(";"));
        scope.insert("ARGC".into(), words.len().to_string());
        for (n, w) in words.iter().enumerate() {
            scope.insert(format!("ARGV{n}"), w.clone());
        }
        let body = f.body.clone();
        self.scopes.push(scope);
        let r = self.run(&body);
        self.scopes.pop();
        r
    }

    /// A command that is not a block or a function call.
    fn command(&mut self, c: &Call) -> Result<(), String> {
        let words = self.expand(&c.args)?;
        match c.name.as_str() {
            "cmake_minimum_required" | "project" | "add_subdirectory" => {}
            "message" => {
                if matches!(words.first().map(String::as_str), Some("FATAL_ERROR" | "SEND_ERROR")) {
                    return Err(format!("message: {}", words[1..].join(" ")));
                }
            }
            "set" | "unset" => {
                let Some((name, mut values)) = words.split_first() else {
                    return Err(format!("{}() without a variable", c.name));
                };
                let parent = values.last().is_some_and(|v| v == "PARENT_SCOPE");
                if parent {
                    values = &values[..values.len() - 1];
                }
                if let Some(cache) = values.iter().position(|v| v == "CACHE") {
                    // A cache entry does not replace a value already set.
                    if self.vars().contains_key(name) {
                        return Ok(());
                    }
                    values = &values[..cache];
                }
                let value = if c.name == "unset" { None } else { Some(values.join(";")) };
                let scope = if parent {
                    let n = self.scopes.len();
                    if n < 2 {
                        return Err("PARENT_SCOPE outside a function".into());
                    }
                    &mut self.scopes[n - 2]
                } else {
                    self.scopes.last_mut().expect("the file's scope")
                };
                match value {
                    Some(v) if !values.is_empty() => scope.insert(name.clone(), v),
                    _ => scope.remove(name),
                };
            }
            "list" | "string" => {
                let (Some(op), Some(name)) = (words.first(), words.get(1)) else {
                    return Err(format!("{}() needs an operation and a variable", c.name));
                };
                if op != "APPEND" {
                    return Err(format!("{}({op}) is not understood", c.name));
                }
                let old = self.get(name).to_string();
                let value = if c.name == "string" {
                    old + &words[2..].concat()
                } else {
                    old.split(';')
                        .filter(|s| !s.is_empty())
                        .chain(words[2..].iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(";")
                };
                self.set(name.clone(), value);
            }
            "add_executable" => {
                let Some((name, rest)) = words.split_first() else {
                    return Err("add_executable() without a name".into());
                };
                if rest.first().is_some_and(|w| w == "IMPORTED" || w == "ALIAS") {
                    return Err(format!("add_executable({name} {}) is not understood", rest[0]));
                }
                let sources = rest
                    .iter()
                    .filter(|w| !matches!(w.as_str(), "WIN32" | "MACOSX_BUNDLE" | "EXCLUDE_FROM_ALL"));
                let standard = |v: &str| self.vars().get(v).filter(|s| !s.is_empty()).cloned();
                let target = Target {
                    name: name.clone(),
                    sources: sources.map(|s| normalize(s)).collect(),
                    c_standard: standard("CMAKE_C_STANDARD"),
                    cxx_standard: standard("CMAKE_CXX_STANDARD"),
                    ..Target::default()
                };
                self.targets.push(target);
            }
            "target_compile_options"
            | "target_compile_definitions"
            | "target_include_directories"
            | "target_link_libraries" => {
                let Some((name, rest)) = words.split_first() else {
                    return Err(format!("{}() without a target", c.name));
                };
                let target = self
                    .targets
                    .iter_mut()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| format!("{}({name}): no such target", c.name))?;
                let list = match c.name.as_str() {
                    "target_compile_options" => &mut target.options,
                    "target_compile_definitions" => &mut target.definitions,
                    "target_include_directories" => &mut target.include_dirs,
                    _ => &mut target.libraries,
                };
                // Items after INTERFACE are for the target's users, not for the target.
                let mut own = true;
                for w in rest {
                    match w.as_str() {
                        "PRIVATE" | "PUBLIC" => own = true,
                        "INTERFACE" => own = false,
                        "BEFORE" | "AFTER" | "SYSTEM" => {}
                        _ if own => list.push(w.clone()),
                        _ => {}
                    }
                }
            }
            name => {
                return Err(format!("{name}() is not understood (compare-standard reads a subset of CMake)"))
            }
        }
        Ok(())
    }

    /// The arguments' values: references and escapes resolved, each unquoted argument split
    /// into its list's elements (and dropped if empty).
    fn expand(&self, args: &[Arg]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for a in args {
            let v = self.resolve(&a.text)?;
            if a.quoted {
                out.push(v);
            } else {
                out.extend(v.split(';').filter(|s| !s.is_empty()).map(String::from));
            }
        }
        Ok(out)
    }

    /// Resolve `${name}` (nested ones too), `$ENV{name}` and backslash escapes in `text`.
    fn resolve(&self, text: &str) -> Result<String, String> {
        let s: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut k = 0;
        while k < s.len() {
            match s[k] {
                '\\' if k + 1 < s.len() => {
                    match s[k + 1] {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '\n' => {}
                        c => out.push(c),
                    }
                    k += 2;
                }
                '$' if s.get(k + 1) == Some(&'{') || s[k + 1..].starts_with(&['E', 'N', 'V', '{']) => {
                    let env = s[k + 1] == 'E';
                    let open = k + if env { 4 } else { 1 };
                    let mut depth = 0;
                    let mut close = None;
                    for (j, &c) in s.iter().enumerate().skip(open) {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    close = Some(j);
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    let close = close.ok_or_else(|| format!("unterminated reference in {text:?}"))?;
                    let name = self.resolve(&s[open + 1..close].iter().collect::<String>())?;
                    if env {
                        out.push_str(&std::env::var(&name).unwrap_or_default());
                    } else {
                        out.push_str(self.get(&name));
                    }
                    k = close + 1;
                }
                c => {
                    out.push(c);
                    k += 1;
                }
            }
        }
        Ok(out)
    }

    /// An `if()` condition, by CMake's rules for the forms it understands.
    fn condition(&self, args: &[Arg]) -> Result<bool, String> {
        let mut words = Vec::new();
        for a in args {
            let v = self.resolve(&a.text)?;
            if a.quoted {
                words.push((v, true));
            } else {
                words.extend(v.split(';').filter(|s| !s.is_empty()).map(|s| (s.to_string(), false)));
            }
        }
        self.or(&words)
    }

    fn or(&self, w: &[(String, bool)]) -> Result<bool, String> {
        let mut any = false;
        for part in w.split(|(t, q)| !q && t == "OR") {
            any |= self.and(part)?;
        }
        Ok(any)
    }

    fn and(&self, w: &[(String, bool)]) -> Result<bool, String> {
        let mut all = true;
        for part in w.split(|(t, q)| !q && t == "AND") {
            all &= self.not(part)?;
        }
        Ok(all)
    }

    fn not(&self, w: &[(String, bool)]) -> Result<bool, String> {
        match w {
            [(t, false), rest @ ..] if t == "NOT" => Ok(!self.not(rest)?),
            [(t, false), (name, _)] if t == "DEFINED" => Ok(self.vars().contains_key(name)),
            [one] => Ok(truthy(&one.0, one.1, self.vars())),
            [a, (op, false), b] => {
                // An unquoted operand that names a variable stands for its value.
                let value = |(t, q): &(String, bool)| {
                    if *q {
                        t.clone()
                    } else {
                        self.vars().get(t).unwrap_or(t).clone()
                    }
                };
                let (a, b) = (value(a), value(b));
                match op.as_str() {
                    "STREQUAL" => Ok(a == b),
                    "EQUAL" => Ok(a.parse::<f64>().ok().is_some_and(|x| b.parse::<f64>().ok() == Some(x))),
                    "MATCHES" => matches(&a, &b),
                    _ => Err(format!("if(… {op} …) is not understood")),
                }
            }
            _ => Err(format!(
                "if({}) is not understood",
                w.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(" ")
            )),
        }
    }
}

/// CMake's truth of a lone `if()` operand: the true and false constants, else (unquoted) a
/// variable that is set to something other than a false constant.
fn truthy(word: &str, quoted: bool, vars: &HashMap<String, String>) -> bool {
    match constant(word) {
        Some(b) => b,
        None if quoted => false,
        None => vars.get(word).is_some_and(|v| constant(v) != Some(false)),
    }
}

/// A source path as CMake takes it: `a//b` and `a/./b` are `a/b` (the file's `PREPEND` adds a
/// `/` to a prefix that ends in one).
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let absolute = if path.starts_with('/') { "/" } else { "" };
    format!("{absolute}{}", parts.join("/"))
}

/// The value of CMake's true and false constants (numbers among them); None for other words.
fn constant(w: &str) -> Option<bool> {
    let u = w.to_ascii_uppercase();
    match u.as_str() {
        "1" | "ON" | "YES" | "TRUE" | "Y" => Some(true),
        "0" | "OFF" | "NO" | "FALSE" | "N" | "IGNORE" | "NOTFOUND" | "" => Some(false),
        _ if w.ends_with("-NOTFOUND") => Some(false),
        _ => w.parse::<f64>().ok().map(|x| x != 0.0),
    }
}

/// `value MATCHES regex`, for regexes that are alternatives of plain words (CMake's search is
/// unanchored); any other regex is an error, not a guess.
fn matches(value: &str, regex: &str) -> Result<bool, String> {
    if regex.contains(|c: char| "^$.[]()*+?{}\\".contains(c)) {
        return Err(format!("MATCHES {regex:?}: only alternatives of plain words are understood"));
    }
    Ok(regex.split('|').any(|alt| value.contains(alt)))
}

/// The index of the call that closes the block opened at `start`, past nested blocks.
fn block_end(calls: &[Call], start: usize, open: &str, close: &str) -> Result<usize, String> {
    let mut depth = 0;
    for (k, c) in calls.iter().enumerate().skip(start) {
        if c.name == open {
            depth += 1;
        } else if c.name == close {
            depth -= 1;
            if depth == 0 {
                return Ok(k);
            }
        }
    }
    Err(format!("{open}() without {close}()"))
}

/// An `if` block's branches — each condition (None for `else`) with the range of its body —
/// and the index of its `endif`.
type Branches<'a> = Vec<(Option<&'a [Arg]>, std::ops::Range<usize>)>;

fn if_branches(calls: &[Call], start: usize) -> Result<(Branches<'_>, usize), String> {
    let end = block_end(calls, start, "if", "endif")?;
    let mut branches = Vec::new();
    let mut cond = Some(&calls[start].args[..]);
    let mut body_start = start + 1;
    let mut depth = 0;
    for (k, c) in calls.iter().enumerate().take(end).skip(start + 1) {
        match c.name.as_str() {
            "if" => depth += 1,
            "endif" => depth -= 1,
            "elseif" | "else" if depth == 0 => {
                branches.push((cond, body_start..k));
                cond = (c.name == "elseif").then_some(&c.args[..]);
                body_start = k + 1;
            }
            _ => {}
        }
    }
    branches.push((cond, body_start..end));
    Ok((branches, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gnu() -> Compilers {
        Compilers { c_id: "GNU".into(), cxx_id: "GNU".into() }
    }

    #[test]
    fn functions_lists_conditions_and_targets() {
        // Written for this test, in the constructs the runner has to read.
        let text = r#"
            cmake_minimum_required(VERSION 3.5)
            set(CMAKE_CXX_STANDARD 17)
            function(WITH_DIR out dir)   # a function that prefixes its list
              set(acc "")
              foreach(x ${ARGN})
                list(APPEND acc "${dir}/${x}")
              endforeach(x)
              set(${out} "${acc}" PARENT_SCOPE)
            endfunction()
            set(srcs one.c
                two.c)
            WITH_DIR(srcs p/ ${srcs})
            if (NOT BUILD_KIND)
              set(BUILD_KIND "Fast")
            endif()
            if(CMAKE_C_COMPILER_ID MATCHES "Clang|GNU")
              string(APPEND CMAKE_C_FLAGS " -w -Wno-x")
            else()
              set(CMAKE_C_FLAGS "-never")
            endif()
            add_executable(a ${srcs})
            target_compile_options(a PRIVATE $<$<C_COMPILER_ID:GNU>:-std=gnu89> INTERFACE -no)
            target_compile_definitions(a PRIVATE A=1 B)
            target_link_libraries(a m pthread)
            if(NOT APPLE)
              add_executable(b b/b.cpp)
              target_include_directories(b PRIVATE b)
            elseif(UNIX)
              add_executable(never never.c)
            endif()
            add_subdirectory(elsewhere)
        "#;
        let p = read(text, &gnu()).unwrap();
        assert_eq!(p.c_flags, ["-w", "-Wno-x"]);
        assert!(p.cxx_flags.is_empty());
        let names: Vec<_> = p.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = &p.targets[0];
        assert_eq!(a.sources, ["p/one.c", "p/two.c"]);
        assert_eq!(a.options, ["$<$<C_COMPILER_ID:GNU>:-std=gnu89>"]);
        assert_eq!(a.definitions, ["A=1", "B"]);
        assert_eq!(a.libraries, ["m", "pthread"]);
        assert_eq!(a.cxx_standard.as_deref(), Some("17"));
        assert_eq!(p.targets[1].include_dirs, ["b"]);
    }

    #[test]
    fn generator_expressions() {
        let clang = Compilers { c_id: "Clang".into(), cxx_id: "Clang".into() };
        let e = "$<$<C_COMPILER_ID:GNU>:-std=gnu89>";
        assert_eq!(genex(e, Some(Lang::C), &gnu()).unwrap(), "-std=gnu89");
        assert_eq!(genex(e, Some(Lang::C), &clang).unwrap(), "");
        let e = "-f$<$<COMPILE_LANGUAGE:CXX>:sized-deallocation>";
        assert_eq!(genex(e, Some(Lang::Cxx), &gnu()).unwrap(), "-fsized-deallocation");
        assert_eq!(genex(e, Some(Lang::C), &gnu()).unwrap(), "-f");
        assert!(genex("$<TARGET_FILE:x>", None, &gnu()).is_err());
    }

    #[test]
    fn what_is_not_understood_names_its_line() {
        let e = read("set(x 1)\n\ninclude(Other)\n", &gnu()).err().unwrap();
        assert_eq!(
            e,
            "CMakeLists.txt:3: include() is not understood (compare-standard reads a subset of CMake)"
        );
        let e = read("if(X MATCHES \"^a.*\")\nendif()\n", &gnu()).err().unwrap();
        assert!(e.starts_with("CMakeLists.txt:1: MATCHES"), "{e}");
        assert!(read("add_executable(a a.c\n", &gnu()).is_err());
        let e = read("function(f)\n  nope()\nendfunction()\nf()\n", &gnu()).err().unwrap();
        assert!(e.starts_with("CMakeLists.txt:2: nope()"), "{e}");
    }
}
