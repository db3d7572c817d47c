"""Great Expectations suites that validate Meterline's warehouse tables in place."""
