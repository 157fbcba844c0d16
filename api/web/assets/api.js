// The public API as the pages use it: fetch with the caller's key, errors as ApiError with the
// stable code of API.md (`{"error": {"code", "message"}}`).
import { has, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { key, body, accept } = {}) {
  const headers = {};
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "NETWORK", error.message);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  try {
    const { error } = await response.json();
    return new ApiError(response.status, error.code, error.message);
  } catch {
    return new ApiError(response.status, `HTTP_${response.status}`, response.statusText);
  }
}

export async function getJSON(path, key) {
  return (await request("GET", path, { key })).json();
}

export async function sendJSON(method, path, body, key) {
  return (await request(method, path, { key, body })).json();
}

export async function getBlob(path, key, accept) {
  return (await request("GET", path, { key, accept })).blob();
}

/** "?symbol=HOG&limit=50" from the non-empty entries of `params` ("" when none). */
export function query(params) {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return entries.length ? `?${new URLSearchParams(entries)}` : "";
}

/** A sentence for the user: the translated code when we have one, else the server's words. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return t("error.unexpected", { message: String(error) });
  const key = `error.${error.code}`;
  return has(key) ? t(key) : t("error.generic", { code: error.code, message: error.message });
}
