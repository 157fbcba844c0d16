// Vietnamese by default, English on request; the choice is remembered (localStorage).
// Static text carries `data-i18n="key"` (or data-i18n-placeholder / data-i18n-title /
// data-i18n-aria-label); dynamic text calls t(key, {params}).
import { MESSAGES } from "./messages.js";

const STORAGE_KEY = "hogx.lang";
const LANGUAGES = ["vi", "en"];
const listeners = [];

export function lang() {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    return LANGUAGES.includes(stored) ? stored : "vi";
  } catch {
    return "vi"; // storage disabled: Vietnamese
  }
}

/** The message `key` in the current language, with {name} placeholders filled from params. */
export function t(key, params = {}) {
  const text = MESSAGES[lang()][key] ?? MESSAGES.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

export function has(key) {
  return key in MESSAGES.vi;
}

export function setLang(value) {
  try {
    localStorage.setItem(STORAGE_KEY, value);
  } catch {
    // not remembered, but still switched for this page
  }
  translatePage();
  for (const listener of listeners) listener();
}

/** Call `listener` after every language switch (to re-render dynamic text). */
export function onLangChange(listener) {
  listeners.push(listener);
}

const ATTRIBUTES = ["placeholder", "title", "aria-label"];

export function translatePage(root = document) {
  document.documentElement.lang = lang();
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const attribute of ATTRIBUTES) {
    const data = `data-i18n-${attribute}`;
    for (const node of root.querySelectorAll(`[${data}]`)) {
      node.setAttribute(attribute, t(node.getAttribute(data)));
    }
  }
}
