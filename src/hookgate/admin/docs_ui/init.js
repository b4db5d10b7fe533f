// hookgate: Swagger UI over the gateway's own OpenAPI document. The online validator
// badge is off (validatorUrl null): the page makes no request outside the gateway.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    displayRequestDuration: true,
    filter: true,
    validatorUrl: null,
  });
});
