// Starts Swagger UI. A file rather than an inline script, so the docs pages' CSP can stay
// at 'self'. Authorization is kept in memory only: no persistAuthorization, no localStorage.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
