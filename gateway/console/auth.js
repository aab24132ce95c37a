// Sign up, log in, log out.
import { call, setToken } from "./api.js";
import { $, guarded } from "./dom.js";

export function setupAuth({ signedIn, signedOut, notify }) {
  const login = $("#login-form");
  const signup = $("#signup-form");

  login.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(login, async () => {
      const answer = await call("POST", "/api/v1/auth/login", {
        auth: false,
        body: { email: login.email.value, password: login.password.value },
      });
      setToken(answer.token);
      login.reset();
      signedIn();
    });
  });

  signup.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(signup, async () => {
      const email = signup.email.value;
      await call("POST", "/api/v1/auth/signup", {
        auth: false,
        body: { email, password: signup.password.value },
      });
      signup.reset();
      login.email.value = email;
      notify(`Account created for ${email}. Log in with your password.`);
      login.password.focus();
    });
  });

  $("#logout").addEventListener("click", async () => {
    try {
      await call("POST", "/api/v1/auth/logout");
    } catch {
      // The token is dropped below either way: the person asked to leave.
    }
    setToken(null);
    signedOut("You are logged out.");
  });
}
