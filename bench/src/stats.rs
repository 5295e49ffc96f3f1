//! Percentiles and the printed table.

use std::time::Duration;

/// The value at quantile `q` (0..=1) of `samples` (sorted here), nearest-rank.
pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// One line of the report.
pub struct Row {
    pub scenario: String,
    pub throughput: Option<f64>,
    pub unit: &'static str,
    pub ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub rss: String,
}

pub fn print(rows: &[Row], elapsed: Duration) {
    let f = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    if rows.is_empty() {
        println!("\ntotal bench time: {:.0}s", elapsed.as_secs_f64());
        return;
    }
    println!();
    println!("| scenario | throughput | vs broker baseline | p50 ms | p99 ms | peak RSS (MiB) |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        println!(
            "| {} | {} {} | {} | {} | {} | {} |",
            r.scenario,
            f(r.throughput, 0),
            r.unit,
            r.ratio
                .map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0)),
            f(r.p50_ms, 1),
            f(r.p99_ms, 1),
            r.rss
        );
    }
    println!("\ntotal bench time: {:.0}s", elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&mut v, 0.5), 50.0);
        assert_eq!(super::percentile(&mut v, 0.99), 99.0);
        assert_eq!(super::percentile(&mut v, 1.0), 100.0);
    }
}
