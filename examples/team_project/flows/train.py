"""The team's own training flow: provenflow records it, registers its model and can retrain with it."""

from __future__ import annotations

from features import COLUMNS, BillShape  # the team's own module, at the project's top
from prefect import flow
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import provenflow as pf


@flow(name="train")
def train(dataset: str = "penguins@latest", model: str = "penguins-species", C: float = 1.0,
          seed: int = 42, test_size: float = 0.25) -> str:  # fmt: skip
    """Train MODEL on DATASET with the team's own features; returns the registered NAME@VERSION."""
    with pf.start(f"train-{model}", parameters={"C": C, "seed": seed, "test_size": test_size}):
        frame = pf.dataset(dataset).dropna(subset=["species"])
        x_train, x_test, y_train, y_test = train_test_split(
            frame[COLUMNS], frame["species"], test_size=test_size, random_state=seed, stratify=frame["species"]
        )
        pipeline = make_pipeline(BillShape(), StandardScaler(), LogisticRegression(C=C, max_iter=1000))
        pipeline.fit(x_train, y_train)
        pf.metric("train_rows", len(x_train))
        version = pf.log_model(pipeline, name=model, input_example=x_test.head(), eval=(x_test, y_test))
    return str(version)


if __name__ == "__main__":
    print(train())
