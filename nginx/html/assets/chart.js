// A bar chart as inline SVG, drawn from [{label, count}] with axis labels. Attributes only (no
// style attributes), so the page's CSP needs no 'unsafe-inline'; colours come from style.css.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 240;
// Room for labels at the phone's larger units too (style.css: 20 of the drawing's 640 wide): the
// y axis's title above the plot, its six-digit ticks left of it, the x labels and title below.
const MARGIN = { top: 32, right: 24, bottom: 52, left: 76 };

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

/**
 * A round top for the y axis: four ticks of the smallest 1, 2, 5 × 10ⁿ step that reaches the
 * tallest bar, so the tick labels are whole, readable numbers and that bar fills at least 40 % of
 * the height (the power of ten is the step's, not the tallest bar's: 10 samples → 20, not 40).
 */
function niceMaximum(value) {
  if (value <= 4) {
    return 4;
  }
  const quarter = value / 4;
  const power = 10 ** Math.floor(Math.log10(quarter));
  const step = [1, 2, 5, 10].find((factor) => factor * power >= quarter) * power;
  return step * 4;
}

function drawYAxis(svg, maximum, plotHeight) {
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (maximum / 4) * tick;
    const y = MARGIN.top + plotHeight - (plotHeight * tick) / 4;
    svg.append(svgElement("line", { class: "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y }));
    svg.append(svgElement("text", { class: "tick", x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, value));
  }
}

function drawXLabels(svg, points, slot, plotHeight) {
  // About six labels whatever the number of bars, always including the last one.
  const every = Math.max(1, Math.ceil(points.length / 6));
  points.forEach((point, index) => {
    if ((points.length - 1 - index) % every === 0) {
      const x = MARGIN.left + slot * index + slot / 2;
      const y = MARGIN.top + plotHeight + 20;
      svg.append(svgElement("text", { class: "tick", x, y, "text-anchor": "middle" }, point.label));
    }
  });
}

/**
 * Draws the chart into `container`, replacing what was there.
 * `xTitle`/`yTitle` name the axes; each bar has a <title> with its exact figure.
 */
export function drawBarChart(container, points, { xTitle, yTitle, description }) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const maximum = niceMaximum(Math.max(0, ...points.map((point) => point.count)));
  const slot = plotWidth / Math.max(points.length, 1);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": description,
    class: "chart",
  });
  drawYAxis(svg, maximum, plotHeight);
  points.forEach((point, index) => {
    const height = (plotHeight * point.count) / maximum;
    const bar = svgElement("rect", {
      class: "bar",
      x: MARGIN.left + slot * index + slot * 0.15,
      y: MARGIN.top + plotHeight - height,
      width: slot * 0.7,
      height,
      "data-count": point.count,
    });
    bar.append(svgElement("title", {}, `${point.label}: ${point.count}`));
    svg.append(bar);
  });
  drawXLabels(svg, points, slot, plotHeight);
  svg.append(svgElement("text", { class: "axis-title", x: MARGIN.left + plotWidth / 2, y: HEIGHT - 6, "text-anchor": "middle" }, xTitle));
  // Above the plot, not turned along the axis: a turned title's letters stuck out of the drawing's
  // left edge at phone sizes.
  svg.append(svgElement("text", { class: "axis-title", x: MARGIN.left, y: 20, "text-anchor": "start" }, yTitle));
  container.replaceChildren(svg);
}
