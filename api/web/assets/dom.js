// Building the page from data without ever parsing data as HTML: every string from the API
// becomes a text node (textContent), never markup.

/** `el("td", {class: "num"}, "60.000 ₫")`: an element with attributes and text/element children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no element #${id}`);
  return node;
}

/** Rows of cells into a <tbody>; a cell is text, a Node, or {text | node, class, colspan}. */
export function fillRows(tbody, rows, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0 && emptyText) {
    const columns = tbody.closest("table")?.querySelectorAll("thead th").length || 1;
    tbody.append(el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText)));
    return;
  }
  // Each cell is labelled with its column's heading, for tables shown as cards on phones.
  const headings = [...(tbody.closest("table")?.querySelectorAll("thead th") ?? [])].map((th) => th.textContent);
  for (const row of rows) {
    const cells = Array.isArray(row) ? row : row.cells;
    const tr = el("tr", Array.isArray(row) ? {} : row.attributes || {});
    cells.forEach((cell, index) => {
      const td = cellOf(cell);
      if (headings[index]) td.dataset.label = headings[index];
      tr.append(td);
    });
    tbody.append(tr);
  }
}

function cellOf(cell) {
  if (cell instanceof Node) return el("td", {}, cell);
  if (cell !== null && typeof cell === "object") {
    return el("td", { class: cell.class, colspan: cell.colspan }, cell.node ?? cell.text);
  }
  return el("td", {}, cell ?? "—");
}

/** A one-line status message; kind is "ok", "error" or "" (plain). */
export function say(node, text, kind = "") {
  node.textContent = text;
  node.className = `status ${kind}`.trim();
}

/** Offer `blob` to the user as a file download. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename, class: "hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
