//! Topic names and topic filters (§4.7): validation and matching.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    /// A wildcard character in a topic name.
    WildcardInName,
    /// `+` or `#` not occupying a whole level, or `#` not last.
    MisplacedWildcard,
    /// U+0000 inside the string.
    NullCharacter,
    /// `$share/` with an empty or invalid share name, or no filter.
    InvalidSharedSubscription,
}

/// Validates a topic name used in PUBLISH (no wildcards, not empty).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validates a topic filter used in SUBSCRIBE / UNSUBSCRIBE, including
/// `$share/{ShareName}/{filter}` shared subscriptions.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    let filter = match parse_shared(filter) {
        Some(Ok((_, f))) => f,
        Some(Err(e)) => return Err(e),
        None => filter,
    };
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" || levels.peek().is_some() {
                return Err(TopicError::MisplacedWildcard);
            }
        } else if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// Splits `$share/{group}/{filter}`; `None` when the filter is not shared.
pub fn parse_shared(filter: &str) -> Option<Result<(&str, &str), TopicError>> {
    let rest = filter.strip_prefix("$share/")?;
    Some(match rest.split_once('/') {
        Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) && !f.is_empty() => {
            Ok((group, f))
        }
        _ => Err(TopicError::InvalidSharedSubscription),
    })
}

/// Whether `filter` (not shared; already validated) matches topic name `topic`.
///
/// Filters starting with a wildcard do not match topics starting with `$` (§4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_rules() {
        assert!(validate_topic_filter("a/+/c").is_ok());
        assert!(validate_topic_filter("#").is_ok());
        assert!(validate_topic_filter("a/#").is_ok());
        assert!(validate_topic_filter("+").is_ok());
        assert_eq!(
            validate_topic_filter("a/#/c"),
            Err(TopicError::MisplacedWildcard)
        );
        assert_eq!(
            validate_topic_filter("a+/b"),
            Err(TopicError::MisplacedWildcard)
        );
        assert_eq!(
            validate_topic_filter("a/b#"),
            Err(TopicError::MisplacedWildcard)
        );
        assert!(validate_topic_filter("$share/g/a/+").is_ok());
        assert_eq!(
            validate_topic_filter("$share//a"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            validate_topic_filter("$share/g"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
    }

    #[test]
    fn matching() {
        assert!(matches("a/b", "a/b"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("+/+", "/b"));
        assert!(matches("a/+/c", "a//c"));
    }
}
