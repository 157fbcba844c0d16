// What every page shares: the header (brand, navigation, language switch, feed status) and
// the footer. Built here once instead of copied into each HTML file.
import { el, fill } from "./dom.js";
import { lang, onLangChange, setLang, t, translatePage } from "./i18n.js";

const NAVIGATION = [
  ["overview", "/web/", "nav.overview"],
  ["trader", "/web/trader", "nav.trader"],
  ["regulator", "/web/regulator", "nav.regulator"],
];

/** Build the header and footer, translate the page, and show `feed`'s status if given. */
export function setupLayout(current, feed = null) {
  const header = document.getElementById("site-header");
  const switcher = el("button", { type: "button", id: "lang-switch", class: "lang-switch" });
  switcher.addEventListener("click", () => setLang(lang() === "vi" ? "en" : "vi"));
  const status = el("span", { id: "feed-status", class: "feed-status", role: "status" });
  const links = NAVIGATION.map(([page, href, key]) =>
    el("a", { href, dataset: { i18n: key }, "aria-current": page === current ? "page" : null }),
  );
  fill(
    header,
    el("a", { href: "/web/", class: "brand" }, "hogx"),
    el("nav", { class: "site-nav" }, links),
    el("div", { class: "header-tools" }, feed ? status : null, switcher),
  );
  const footer = document.getElementById("site-footer");
  if (footer) fill(footer, el("p", { dataset: { i18n: "footer.note" } }));
  const refresh = () => {
    switcher.textContent = lang() === "vi" ? "English" : "Tiếng Việt";
    switcher.setAttribute("lang", lang() === "vi" ? "en" : "vi");
    if (feed) showStatus(status, feed.status);
  };
  onLangChange(refresh);
  if (feed) feed.onStatus((value) => showStatus(status, value));
  translatePage();
  refresh();
}

function showStatus(node, status) {
  node.textContent = t(`feed.${status}`);
  node.dataset.state = status;
}
