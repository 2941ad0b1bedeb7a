"""Running provenflow as a service: the local Prefect server, the warm runner, the stack that
`provenflow up` starts, the project's prefect.yaml, and process bookkeeping."""
