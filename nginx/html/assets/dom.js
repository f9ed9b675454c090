// Small DOM helpers: elements are built with textContent only, so API text is never parsed as HTML.

export function el(name, { className, text, attributes = {} } = {}, children = []) {
  const element = document.createElement(name);
  if (className) {
    element.className = className;
  }
  if (text !== undefined && text !== null) {
    element.textContent = String(text);
  }
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  element.append(...children);
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

export function row(cells) {
  return el(
    "tr",
    {},
    cells.map((cell) => (cell instanceof Node ? el("td", {}, [cell]) : el("td", { text: cell }))),
  );
}

export function numberCell(value) {
  return el("td", { className: "number", text: value.toLocaleString("en") });
}

export function showMessage(id, text) {
  const box = byId(id);
  box.textContent = text || "";
  box.classList.toggle("shown", Boolean(text));
}

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

export function formatWhen(iso) {
  return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

/** "2026-11-22" → "22 Nov", read as a UTC day (the API counts days in UTC). */
export function shortDay(isoDate) {
  return new Date(`${isoDate}T00:00:00Z`).toLocaleDateString("en-GB", {
    day: "numeric",
    month: "short",
    timeZone: "UTC",
  });
}

export function humanize(word) {
  const spaced = String(word).replaceAll("_", " ");
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

/**
 * Where a paged list stands, in `${prefix}-position`, and whether `${prefix}-previous` and
 * `${prefix}-next` can move (a total counted only up to a cap: next while a page comes back full).
 */
export function drawPager(page, prefix, noun = "samples") {
  const pages = Math.max(1, Math.ceil(page.total / page.page_size));
  const count = `${page.total_is_exact ? "" : "at least "}${page.total.toLocaleString("en")} ${noun}`;
  const at = page.page.toLocaleString("en");
  byId(`${prefix}-position`).textContent = page.total_is_exact ? `Page ${at} of ${pages.toLocaleString("en")} (${count})` : `Page ${at} (${count})`;
  byId(`${prefix}-previous`).disabled = page.page <= 1;
  byId(`${prefix}-next`).disabled = page.total_is_exact ? page.page >= pages : page.items.length < page.page_size;
}
