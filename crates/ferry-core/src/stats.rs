//! Counters declared once: [`counters!`](crate::counters) defines a struct of
//! `AtomicU64`s with each field's metric name and help beside it, and a
//! `metrics()` iterator over them, so an exporter is one loop.

/// Whether a metric only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (Prometheus `counter`).
    Counter,
    /// Goes up and down (Prometheus `gauge`).
    Gauge,
}

/// One field of a counters struct, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The metric's name, without the exporter's prefix.
    pub name: &'static str,
    /// What it counts, for the exporter's help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its value now.
    pub value: u64,
}

/// Defines a struct of `AtomicU64` counters, each declared with its metric name and help
/// (`field: Counter("name", "help")` or `Gauge(…)`), deriving `Debug` and `Default`, with
/// `metrics()` yielding every field as a [`Metric`] in declaration order.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $kind:ident($metric:literal, $help:literal),
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                #[doc = concat!($help, " (metric `", $metric, "`).")]
                pub $field: ::std::sync::atomic::AtomicU64,
            )*
        }

        impl $name {
            /// Every counter as a metric (name, help, kind, value now), in declaration order.
            pub fn metrics(&self) -> impl Iterator<Item = $crate::stats::Metric> + '_ {
                [$(
                    $crate::stats::Metric {
                        name: $metric,
                        help: $help,
                        kind: $crate::stats::MetricKind::$kind,
                        value: self.$field.load(::std::sync::atomic::Ordering::Relaxed),
                    },
                )*]
                .into_iter()
            }
        }
    };
}

#[cfg(test)]
#[allow(unreachable_pub, reason = "the macro's methods are public; the test struct is not")]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    crate::counters! {
        /// Two counters for the test.
        struct Two {
            first: Counter("first_total", "The first"),
            level: Gauge("level", "A level"),
        }
    }

    #[test]
    fn metrics_follow_the_declaration_with_their_values() {
        let t = Two::default();
        t.first.fetch_add(3, Ordering::Relaxed);
        let m: Vec<Metric> = t.metrics().collect();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].name, m[0].help, m[0].kind, m[0].value),
            ("first_total", "The first", MetricKind::Counter, 3)
        );
        assert_eq!((m[1].name, m[1].kind, m[1].value), ("level", MetricKind::Gauge, 0));
    }
}
