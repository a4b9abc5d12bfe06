// The login view: the admin token (`bungalow dashboard --token`) or a project's bgw_ token.
// `bungalow dashboard` prints a one-time link that logs in without one (GET /login?ticket=).

import {login} from "../api.js";
import {errorLine, field, fill, guarded, h} from "../dom.js";

export function render(main, _params, app) {
  const token = h("input", {type: "password", id: "login-token", name: "token", required: true,
                            autocomplete: "current-password", "data-testid": "login-token",
                            size: 48});
  const submit = h("button", {type: "submit", "data-testid": "login-submit"}, "Log in");
  const error = errorLine("login-error");
  const form = h("form", {class: "login card", "data-testid": "login-form"},
    h("h1", {}, "Log in to bungalow"),
    field("Token", token,
          "The admin token (bungalow dashboard --token) or a project's token (bgw_…). "
          + "Or open the one-time link `bungalow dashboard` prints."),
    submit, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = token.value.trim();
    if (!value) {
      error.say("Type a token first: the admin's or a project's.");
      token.focus();
      return;
    }
    const answer = await guarded(submit, error, () => login(value));
    if (answer) {
      token.value = "";
      app.loggedIn();
    } else {
      token.select();
    }
  });
  fill(main, form);
  token.focus();
}
