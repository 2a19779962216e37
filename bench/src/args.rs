//! A small `--key value` parser. The generator is driven by scripts, so plain
//! flags with defaults are enough and keep the crate free of a CLI dependency.

use std::collections::HashMap;
use std::str::FromStr;

pub struct Args {
    values: HashMap<String, String>,
    used: std::cell::RefCell<Vec<String>>,
}

impl Args {
    /// Parses `--key value` and `--key=value`; a flag followed by another flag
    /// (or by nothing) is a boolean set to "true".
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut i = 0;
        while i < raw.len() {
            let Some(key) = raw[i].strip_prefix("--") else {
                return Err(format!("unexpected argument '{}'", raw[i]));
            };
            if let Some((k, v)) = key.split_once('=') {
                values.insert(k.to_string(), v.to_string());
                i += 1;
            } else if i + 1 < raw.len() && !raw[i + 1].starts_with("--") {
                values.insert(key.to_string(), raw[i + 1].clone());
                i += 2;
            } else {
                values.insert(key.to_string(), "true".to_string());
                i += 1;
            }
        }
        Ok(Args {
            values,
            used: Default::default(),
        })
    }

    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        self.used.borrow_mut().push(key.to_string());
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: cannot parse '{v}'")),
        }
    }

    pub fn opt(&self, key: &str) -> Option<String> {
        self.used.borrow_mut().push(key.to_string());
        self.values.get(key).cloned()
    }

    pub fn flag(&self, key: &str) -> bool {
        self.used.borrow_mut().push(key.to_string());
        self.values.get(key).is_some_and(|v| v != "false")
    }

    /// Rejects flags nobody asked for, so a typo fails loudly instead of
    /// silently running the default scenario.
    pub fn finish(&self) -> Result<(), String> {
        let used = self.used.borrow();
        let mut unknown: Vec<&String> = self.values.keys().filter(|k| !used.contains(k)).collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(format!("unknown flag --{k}")),
        }
    }
}
