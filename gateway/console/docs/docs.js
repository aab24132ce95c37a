// Starts Swagger UI on /openapi.json. A file of its own, not an inline script,
// so that the page's Content-Security-Policy can forbid inline code.
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // The default validator badge would load an image from another host.
  validatorUrl: null,
});
