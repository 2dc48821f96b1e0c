package dev.dsmoe.serve;

/**
 * A request the server refuses, answered in OpenAI's error format:
 * {@code {"error": {"message", "type", "param", "code"}}} with an HTTP status.
 */
final class ApiException extends Exception {

    final int status;
    final String type, param, code;

    ApiException(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: a malformed or invalid request; {@code param} names the field (or null). */
    static ApiException invalid(String param, String message) {
        return new ApiException(400, "invalid_request_error", param, null, message);
    }

    /** 400 with a code (e.g. {@code context_length_exceeded}, {@code model_not_found}). */
    static ApiException invalid(String param, String code, String message) {
        return new ApiException(400, "invalid_request_error", param, code, message);
    }
}
