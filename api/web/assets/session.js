// Signing in with an API key: the key lives in sessionStorage only (gone when the tab closes),
// one per role, so a trader key and a regulator key never mix.
import { describeError } from "./api.js";
import { el, fill, say } from "./dom.js";
import { onLangChange, translatePage } from "./i18n.js";

const storageKey = (role) => `hogx.key.${role}`;

function storedKey(role) {
  try {
    return sessionStorage.getItem(storageKey(role));
  } catch {
    return null;
  }
}

function remember(role, key) {
  try {
    sessionStorage.setItem(storageKey(role), key);
  } catch {
    // storage disabled: signed in until the page is left
  }
}

function forget(role) {
  try {
    sessionStorage.removeItem(storageKey(role));
  } catch {
    // nothing stored
  }
}

/** The sign-in form and the signed-in bar, built into `#signin`. */
function build(container) {
  const input = el("input", {
    id: "signin-key",
    name: "api_key",
    type: "password",
    autocomplete: "off",
    required: true,
    dataset: { i18nPlaceholder: "signin.placeholder" },
  });
  const status = el("p", { id: "signin-status", class: "status", role: "status" });
  const form = el(
    "form",
    { id: "signin-form", class: "panel signin" },
    el("label", { for: "signin-key", dataset: { i18n: container.dataset.label } }),
    el("div", { class: "inline" }, input, el("button", { type: "submit", dataset: { i18n: "signin.submit" } })),
    el("p", { class: "hint", dataset: { i18n: "signin.note" } }),
    status,
  );
  const who = el("span", { id: "signed-in-as" });
  const signOut = el("button", {
    id: "signout",
    type: "button",
    class: "secondary",
    dataset: { i18n: "signin.signout" },
  });
  const bar = el("div", { id: "signed-in", class: "signed-in" }, who, signOut);
  fill(container, form, bar);
  translatePage(container);
  return { form, input, status, bar, who, signOut };
}

/**
 * Sign in with a key kept for `role`. `probe(key)` must resolve (e.g. GET /v1/account) for the
 * key to be accepted; `describe(probed)` says who is signed in; `onSignedIn(key, probed)` and
 * `onSignedOut()` switch the rest of the page.
 */
export function setupSignIn({ role, probe, describe, onSignedIn, onSignedOut }) {
  const ui = build(document.getElementById("signin"));
  let probedNow = null;

  const show = (probed) => {
    probedNow = probed;
    ui.form.hidden = probed !== null;
    ui.bar.hidden = probed === null;
    ui.who.textContent = probed === null ? "" : describe(probed);
  };
  onLangChange(() => show(probedNow));

  async function tryKey(key) {
    say(ui.status, "");
    try {
      const probed = await probe(key);
      remember(role, key);
      show(probed);
      onSignedIn(key, probed);
    } catch (error) {
      forget(role);
      show(null);
      say(ui.status, describeError(error), "error");
    }
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.input.value.trim();
    ui.input.value = "";
    if (key) tryKey(key);
  });
  ui.signOut.addEventListener("click", () => {
    forget(role);
    show(null);
    onSignedOut();
  });
  show(null);
  const key = storedKey(role);
  if (key) tryKey(key);
}
