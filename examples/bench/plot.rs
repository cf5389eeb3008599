//! The chart: throughput per client and mode, and latency percentiles, as a PNG.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::console_vs_kcat::Summary;
use crate::{Mode, Result, RunResult, Settings};

const HERALD: RGBColor = RGBColor(0xE0, 0x6C, 0x1F);
const RDKAFKA: RGBColor = RGBColor(0x2B, 0x6C, 0xB0);
const JAVA: RGBColor = RGBColor(0x6A, 0x3D, 0x9A);
const PCT: [(&str, RGBColor); 3] = [
    ("p50", RGBColor(0x7F, 0xB8, 0x00)),
    ("p99", RGBColor(0xF0, 0xA2, 0x02)),
    ("p99.9", RGBColor(0xC0, 0x39, 0x2B)),
];

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers the font; `false` (draw no text) when it cannot be read.
fn load_font(path: &Path) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    }
}

pub(crate) fn draw(
    path: &Path,
    font: &Path,
    s: &Settings,
    runs: &[RunResult],
    console: Option<&Summary>,
) -> Result<()> {
    let text = load_font(font);
    if !text {
        eprintln!(
            "bench: font {} unavailable; the chart has no text",
            font.display()
        );
    }
    let root = BitMapBackend::new(path, (1800, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let body = if text {
        let (title, body) = root.split_vertically(56);
        let key = if s.key_size == 0 {
            "no key".into()
        } else {
            format!("{} B key", s.key_size)
        };
        let vs = if runs.iter().any(|r| r.client == "java") {
            "Herald vs librdkafka vs Java"
        } else {
            "Herald vs librdkafka"
        };
        title.draw(&Text::new(
            format!(
                "{vs}: {} records of {} B, {key}, acks={}, linger.ms={}, batch.size={}, \
                 compression={}, idempotence={}, {} partitions",
                s.records,
                s.record_size,
                s.acks,
                s.linger_ms,
                s.batch_size,
                s.compression,
                s.idempotence,
                s.partitions
            ),
            (900, 30),
            ("sans-serif", 22)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        body
    } else {
        root.clone()
    };
    let max: Vec<&RunResult> = runs.iter().filter(|r| r.mode == Mode::Max).collect();
    let rate: Vec<&RunResult> = runs.iter().filter(|r| r.mode == Mode::Rate).collect();
    let mut lat: Vec<(String, &[&RunResult])> = Vec::new();
    if !max.is_empty() {
        lat.push(("Latency at full speed (ms, log scale)".into(), &max));
    }
    if !rate.is_empty() {
        lat.push((
            format!("Latency at {} records/s (ms, log scale)", s.rate),
            &rate,
        ));
    }
    // Left to right: throughput (28% of the runs' share, all of it without latency panels),
    // the latency panels sharing the rest, the console panel (16%, or everything without
    // runs). `edges` holds each panel's right edge; the last panel ends at the area's.
    let full = body.dim_in_pixel().0 as i32;
    let has_runs = !max.is_empty() || !rate.is_empty();
    let runs_w = match (has_runs, console.is_some()) {
        (false, _) => 0,
        (true, true) => full * 84 / 100,
        (true, false) => full,
    };
    let tw = if lat.is_empty() {
        runs_w
    } else {
        runs_w * 28 / 100
    };
    let mut edges = Vec::new();
    if has_runs {
        edges.push(tw);
        let n = lat.len() as i32;
        edges.extend((1..=n).map(|i| tw + (runs_w - tw) * i / n));
    }
    if console.is_some() {
        edges.push(full);
    }
    edges.pop();
    let panels = body.split_by_breakpoints(edges, Vec::<i32>::new());
    let mut panels = panels.iter();
    let mut next = || panels.next().expect("a panel per chart");
    if has_runs {
        let tput = if max.is_empty() { &rate } else { &max };
        throughput(&root, next(), tput, text)?;
        for (title, runs) in &lat {
            latency(&root, next(), title, runs, text)?;
        }
    }
    if let Some(c) = console {
        console_panel(&root, next(), c, text)?;
    }
    root.present()?;
    Ok(())
}

/// console_producer against kcat: wall and CPU seconds of the whole process, medians.
fn console_panel(root: &Area<'_>, area: &Area<'_>, c: &Summary, text: bool) -> Result<()> {
    let bars = [
        ("kcat", "wall", c.kcat_wall_s, RDKAFKA),
        ("console", "wall", c.herald_wall_s, HERALD),
        ("kcat", "cpu", c.kcat_cpu_s, RDKAFKA),
        ("console", "cpu", c.herald_cpu_s, HERALD),
    ];
    let top = bars.iter().map(|b| b.2).fold(0.0, f64::max).max(0.001) * 1.2;
    let mut b = ChartBuilder::on(area);
    b.margin(18)
        .x_label_area_size(if text { 50 } else { 5 })
        .y_label_area_size(if text { 50 } else { 5 });
    if text {
        b.caption(
            format!(
                "console / kcat: {:.2}x wall, {:.2}x cpu",
                c.wall_ratio, c.cpu_ratio
            ),
            ("sans-serif", 15),
        );
    }
    let n = bars.len() as f64;
    let mut chart = b.build_cartesian_2d(0f64..n, 0f64..top)?;
    frame(&mut chart, text, n, 0.0, top, &|v| format!("{v:.2}"))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, _, v, c))| {
        let x = i as f64;
        Rectangle::new([(x + 0.15, 0.0), (x + 0.85, *v)], c.filled())
    }))?;
    if text {
        let label = ("sans-serif", 13)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, _, v, _))| {
            Text::new(format!("{v:.2}"), (i as f64 + 0.5, v * 1.01), label.clone())
        }))?;
        let style = ("sans-serif", 15)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (i, (who, what, _, _)) in bars.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw(&Text::new(who.to_string(), (x, y + 8), style.clone()))?;
            root.draw(&Text::new(what.to_string(), (x, y + 26), style.clone()))?;
        }
    }
    Ok(())
}

/// Client names under the x axis, on two lines.
fn x_names(root: &Area<'_>, at: impl Fn(usize) -> (i32, i32), runs: &[&RunResult]) -> Result<()> {
    let style = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, r) in runs.iter().enumerate() {
        let (x, y) = at(i);
        root.draw(&Text::new(r.client.clone(), (x, y + 8), style.clone()))?;
        // `producer_send` is wider than a bar.
        let api = if r.api == "producer_send" {
            "p.send"
        } else {
            &r.api
        };
        root.draw(&Text::new(api.to_string(), (x, y + 26), style.clone()))?;
    }
    Ok(())
}

fn color(r: &RunResult) -> RGBColor {
    match r.client.as_str() {
        "herald" => HERALD,
        "java" => JAVA,
        _ => RDKAFKA,
    }
}

fn throughput(root: &Area<'_>, area: &Area<'_>, runs: &[&RunResult], text: bool) -> Result<()> {
    let n = runs.len().max(1) as f64;
    let top = runs.iter().map(|r| r.records_per_sec).fold(1.0, f64::max) * 1.15;
    let mut b = ChartBuilder::on(area);
    b.margin(18)
        .x_label_area_size(if text { 50 } else { 5 })
        .y_label_area_size(if text { 70 } else { 5 });
    if text {
        let title = match runs.first().map(|r| r.mode) {
            Some(Mode::Rate) => "Throughput at the offered rate (records/s)",
            _ => "Throughput at full speed (records/s)",
        };
        b.caption(title, ("sans-serif", 20));
    }
    let mut chart = b.build_cartesian_2d(0f64..n, 0f64..top)?;
    frame(&mut chart, text, n, 0.0, top, &|v| si(*v))?;
    chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
        let x = i as f64;
        Rectangle::new(
            [(x + 0.2, 0.0), (x + 0.8, r.records_per_sec)],
            color(r).filled(),
        )
    }))?;
    if text {
        let label = ("sans-serif", 14)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
            Text::new(
                si(r.records_per_sec),
                (i as f64 + 0.5, r.records_per_sec * 1.01),
                label.clone(),
            )
        }))?;
        x_names(root, |i| chart.backend_coord(&(i as f64 + 0.5, 0.0)), runs)?;
    }
    Ok(())
}

fn latency(
    root: &Area<'_>,
    area: &Area<'_>,
    title: &str,
    runs: &[&RunResult],
    text: bool,
) -> Result<()> {
    let n = runs.len().max(1) as f64;
    let values = |r: &RunResult| [r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.p999];
    let all: Vec<f64> = runs
        .iter()
        .flat_map(|r| values(r))
        .filter(|v| *v > 0.0)
        .collect();
    let top = all.iter().copied().fold(1.0, f64::max) * 2.0;
    let bottom = (all.iter().copied().fold(f64::INFINITY, f64::min) / 2.0).clamp(0.001, 1.0);
    let mut b = ChartBuilder::on(area);
    b.margin(18)
        .x_label_area_size(if text { 50 } else { 5 })
        .y_label_area_size(if text { 70 } else { 5 });
    if text {
        b.caption(title, ("sans-serif", 20));
    }
    let mut chart = b.build_cartesian_2d(0f64..n, (bottom..top).log_scale())?;
    frame(&mut chart, text, n, bottom, top, &|v| format!("{v}"))?;
    let width = 0.22;
    for (j, (name, c)) in PCT.iter().enumerate() {
        let series = chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
            let x = i as f64 + 0.17 + j as f64 * width;
            let v = values(r)[j].max(bottom);
            Rectangle::new([(x, bottom), (x + width * 0.9, v)], c.filled())
        }))?;
        if text {
            series
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        }
    }
    if text {
        let label = ("sans-serif", 10)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        for j in 0..PCT.len() {
            chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
                let x = i as f64 + 0.17 + j as f64 * width + width * 0.45;
                let v = values(r)[j].max(bottom);
                Text::new(short(v), (x, v * 1.05), label.clone())
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        x_names(
            root,
            |i| chart.backend_coord(&(i as f64 + 0.5, bottom)),
            runs,
        )?;
    }
    Ok(())
}

/// The y mesh with labels, or without a font the bare axes.
fn frame<Y>(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    text: bool,
    n: f64,
    bottom: f64,
    top: f64,
    label: &dyn Fn(&f64) -> String,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    if text {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(label)
            .y_label_style(("sans-serif", 14))
            .draw()?;
        Ok(())
    } else {
        axes(chart, n, bottom, top)
    }
}

/// The two axes as plain lines: a mesh draws labels, which need a font.
fn axes<Y>(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    n: f64,
    bottom: f64,
    top: f64,
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart.draw_series([
        PathElement::new(vec![(0.0, bottom), (n, bottom)], BLACK),
        PathElement::new(vec![(0.0, bottom), (0.0, top)], BLACK),
    ])?;
    Ok(())
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
