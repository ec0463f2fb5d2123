//! Tandem's HTTPS listeners: device endpoints, admin REST API, System Manager portal and load-balancer probes
