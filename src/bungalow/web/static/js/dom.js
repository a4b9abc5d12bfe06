// Small DOM helpers: build elements, and the error line each control shows its sentence in.

/**
 * h("button", {type: "button", onclick: f, "data-testid": "x"}, "Start") -> HTMLButtonElement.
 * Attributes starting with "on" become listeners; `class`, `for`, `data-*`, `aria-*` are
 * attributes; others are set as properties (value, checked, disabled...). Children may be
 * strings, nodes, null/false (skipped) or arrays of those.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class" || key === "for" || key === "role" || key === "hidden" || key === "colspan"
               || key === "tabindex" || key.startsWith("data-") || key.startsWith("aria-")) {
      el.setAttribute(key, value === true ? "" : String(value));
    } else {
      el[key] = value;
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * The line where a control's failure is said: one sentence, read out by screen readers
 * (aria-live). Returns the element with `.say(text)` and `.clear()`.
 */
export function errorLine(testid) {
  const el = h("p", {class: "error", role: "status", "aria-live": "polite", "data-testid": testid});
  el.say = (text) => { el.textContent = text; };
  el.clear = () => { el.textContent = ""; };
  return el;
}

/**
 * Run `action` (async) for a control: disable it meanwhile, show the API's sentence in
 * `line` when it fails. Returns what `action` returned, or undefined after a failure.
 */
export async function guarded(control, line, action) {
  line.clear();
  if (control) control.disabled = true;
  try {
    return await action();
  } catch (err) {
    line.say(err && err.message ? err.message : String(err));
    return undefined;
  } finally {
    if (control) control.disabled = false;
  }
}

/**
 * A connection's status line (console, shell, screen): `data-state` says which state
 * (connecting, open, closed, waiting, error...) for styles and tests, the text says it to
 * people. Returns the element with `.say(state, text)`.
 */
export function statusLine(testid, state = "closed") {
  const el = h("p", {class: "status", role: "status", "aria-live": "polite", "data-testid": testid,
                     "data-state": state});
  el.say = (next, text) => {
    el.dataset.state = next;
    el.textContent = text;
  };
  return el;
}

/** A labelled form field: <label>Text <input ...></label>, the input given. */
export function field(text, input, hint) {
  return h("label", {class: "field"}, h("span", {}, text), input,
           hint ? h("small", {class: "hint"}, hint) : null);
}

/** Say something in the page's notice line (for what no control caused). */
export function notice(text) {
  const el = document.getElementById("notice");
  if (el) el.textContent = text;
}
