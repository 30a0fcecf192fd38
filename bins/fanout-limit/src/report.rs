//! What a run prints: one JSON line, its fields in a fixed order and its
//! numbers with four decimals, written by hand so that the line stays byte
//! for byte what earlier runs printed; and the percentiles in it.

use std::fmt::Display;

/// Samples sorted for percentiles.
#[derive(Debug)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// `values`, sorted.
    pub fn new(mut values: Vec<f64>) -> Samples {
        values.sort_by(f64::total_cmp);
        Samples(values)
    }

    /// The nearest-rank percentile `p` (0 to 1): the smallest sample with
    /// at least `p` of all samples at or below it. `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let rank = ((p * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len().max(1));
        self.0.get(rank - 1).copied()
    }

    /// The largest sample.
    pub fn max(&self) -> Option<f64> {
        self.0.last().copied()
    }

    /// The mean (`None` without samples).
    pub fn mean(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.iter().sum::<f64>() / self.0.len() as f64)
    }
}

/// A JSON object on one line, fields in the order they are added.
#[derive(Debug, Default)]
pub struct JsonLine(Vec<(&'static str, String)>);

impl JsonLine {
    /// A string field. Values are the tool's own words: nothing to escape.
    pub fn text(&mut self, key: &'static str, value: &str) -> &mut JsonLine {
        self.0.push((key, format!("\"{value}\"")));
        self
    }

    /// A whole number, a boolean: printed as Rust prints them.
    pub fn plain(&mut self, key: &'static str, value: impl Display) -> &mut JsonLine {
        self.0.push((key, value.to_string()));
        self
    }

    /// A measurement, with four decimals.
    pub fn number(&mut self, key: &'static str, value: f64) -> &mut JsonLine {
        self.0.push((key, format!("{value:.4}")));
        self
    }

    /// A measurement that may be missing (`null`).
    pub fn maybe(&mut self, key: &'static str, value: Option<f64>) -> &mut JsonLine {
        match value {
            Some(value) => self.number(key, value),
            None => self.plain(key, "null"),
        }
    }

    /// A list of whole numbers (one per process, say).
    pub fn plain_list(
        &mut self,
        key: &'static str,
        values: impl IntoIterator<Item: Display>,
    ) -> &mut JsonLine {
        let items: Vec<String> = values.into_iter().map(|value| value.to_string()).collect();
        self.list(key, items)
    }

    /// A list of measurements that may be missing, each as
    /// [`maybe`](JsonLine::maybe) prints one.
    pub fn maybe_list(
        &mut self,
        key: &'static str,
        values: impl IntoIterator<Item = Option<f64>>,
    ) -> &mut JsonLine {
        let items: Vec<String> = values
            .into_iter()
            .map(|value| value.map_or_else(|| "null".into(), |value| format!("{value:.4}")))
            .collect();
        self.list(key, items)
    }

    fn list(&mut self, key: &'static str, items: Vec<String>) -> &mut JsonLine {
        self.0.push((key, format!("[{}]", items.join(","))));
        self
    }

    /// The line, without a newline.
    pub fn render(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(key, value)| format!("\"{key}\":{value}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = Samples::new((1..=100).rev().map(f64::from).collect());
        assert_eq!(samples.percentile(0.5), Some(50.0));
        assert_eq!(samples.percentile(0.99), Some(99.0));
        assert_eq!(samples.percentile(1.0), Some(100.0));
        assert_eq!(samples.percentile(0.0), Some(1.0));
        assert_eq!(samples.max(), Some(100.0));
        assert_eq!(samples.mean(), Some(50.5));
    }

    #[test]
    fn few_samples_round_up_to_a_sample() {
        let samples = Samples::new(vec![3.0, 1.0, 2.0]);
        assert_eq!(samples.percentile(0.5), Some(2.0));
        assert_eq!(samples.percentile(0.99), Some(3.0));
        let one = Samples::new(vec![7.5]);
        assert_eq!(one.percentile(0.5), Some(7.5));
        assert_eq!(one.percentile(0.99), Some(7.5));
    }

    #[test]
    fn no_samples_have_no_percentiles() {
        let none = Samples::new(vec![]);
        assert_eq!(none.percentile(0.5), None);
        assert_eq!(none.max(), None);
        assert_eq!(none.mean(), None);
    }

    #[test]
    fn a_line_keeps_its_order_and_four_decimals() {
        let mut line = JsonLine::default();
        line.text("mode", "broadcast")
            .plain("conns", 1000)
            .plain("pinned", false)
            .number("p50_ms", 5.22404)
            .maybe("warmup_p50_ms", None)
            .maybe("max_ms", Some(2.0))
            .plain_list("server_conns", [334, 333])
            .maybe_list("each_ms", [Some(1.0), None])
            .maybe_list("none_ms", []);
        assert_eq!(
            line.render(),
            r#"{"mode":"broadcast","conns":1000,"pinned":false,"p50_ms":5.2240,"warmup_p50_ms":null,"max_ms":2.0000,"server_conns":[334,333],"each_ms":[1.0000,null],"none_ms":[]}"#
        );
    }
}
